"""A small PNG chart of time and memory against shop size.

matplotlib is used when the venv has it; it is not among the project's pinned requirements (nor is Pillow),
so without it the chart is drawn here with numpy and zlib: two panels (time per feed and its floor; peak
RSS per feed), log-scaled size axis, a 5x7 bitmap font for labels.
"""
from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

import numpy as np

COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def draw(scaling: dict, path: Path) -> Path:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return _draw_numpy(scaling, path)
    return _draw_mpl(scaling, path)


def _series(scaling: dict):
    runs = [r for r in scaling["runs"] if r.get("feeds")]
    sizes = [r["customers"] for r in runs]
    feeds = sorted({f for r in runs for f in r["feeds"]})
    big = [f for f in feeds if max(r["feeds"].get(f, {}).get("rows", 0) for r in runs) >= 1000] or feeds
    time_ = {f: [r["feeds"].get(f, {}).get("total_s") for r in runs] for f in big}
    floor = {f: [r["feeds"].get(f, {}).get("floor_s") for r in runs] for f in big}
    rss = {f: [r["feeds"].get(f, {}).get("peak_rss_mb") for r in runs] for f in big}
    return sizes, big, time_, floor, rss


def _draw_mpl(scaling: dict, path: Path) -> Path:  # pragma: no cover - matplotlib is optional
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes, feeds, time_, floor, rss = _series(scaling)
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, f in enumerate(feeds):
        c = [x / 255 for x in COLOURS[i % len(COLOURS)]]
        a.plot(sizes, time_[f], "-o", color=c, label=f)
        a.plot(sizes, floor[f], ":", color=c)
        b.plot(sizes, rss[f], "-o", color=c, label=f)
    for ax, title in ((a, "feed time, s (dotted: floor)"), (b, "peak RSS, MB")):
        ax.set_xscale("log")
        ax.set_xlabel("customers")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    b.axhline(1024, color="red", lw=0.8)
    a.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


# ------------------------------------------------------------------ numpy fallback
_FONT = {  # 5x7 glyphs, rows top to bottom, '#' = ink
    "0": ".###.#...##..###.#.###..##...#.###.", "1": "..#...##....#....#....#....#...###.",
    "2": ".###.#...#....#...#...#...#....#####", "3": "####.....#...#...##.....##...#.###.",
    "4": "...#...##..#.#.#..#.#####...#....#.", "5": "#####....####.....#....##...#.###.",
    "6": "..##..#...#....####.#...##...#.###.", "7": "#####....#...#...#...#....#....#...",
    "8": ".###.#...##...#.###.#...##...#.###.", "9": ".###.#...##...#.####....#...#..##..",
    ".": "..............................##...", " ": "...................................",
    "k": "#....#..#.#.#..##...#.#..#..#.#...#", "M": "#...###.###.#.##...##...##...##...#",
    "s": "...........####.....###.....####.", "B": "####.#...##...#####.#...##...#####.",
    "m": "..........##.#.#.#.##.#.##...##...#", "b": "#....#....####.#...##...##...#####.",
    "t": ".#....#...####..#....#....#.#...#..", "i": "..#.........##....#....#....#...###.",
    "e": "..........###.#...######.....###.", "c": "...........###.#....#....#...#.###.",
    "u": "..........#...##...##...##..##.##.#", "o": "...........###.#...##...##...#.###.",
    "r": "..........#.##.##...##....#....#....", "n": "..........#.##.##...##...##...##...#",
    "p": "..........####.#...#####.#....#....", "a": "..........###......#.####...#.####",
    "l": ".##....#....#....#....#....#...###.", "f": "..##..#..#.#....###..#....#....#...",
    "d": "....#....#.##.##..##...##...#.####", "S": ".####....#.....###......#....#####.",
    "R": "####.#...##...#####.#.#..#..#.#...#", "/": "....#...#...#...#...#...#...........",
    ",": "..........................##...#..", "(": "...#..#...#....#....#.....#.....#.",
    ")": ".#.....#.....#....#....#...#...#...", ":": ".......##.......................##",
    "x": "..........#...#.#.#...#...#.#.#...#", "g": "...........####.#...#.####....#.###.",
    "h": "#....#....#.##.##...##...##...##...#", "y": "..........#...##...#.####....#.###.",
    "v": "..........#...##...##...#.#.#...#..", "w": "..........#...##...##.#.##.#.#.#.#.",
}


def _glyph(ch: str) -> np.ndarray:
    bits = (_FONT.get(ch) or _FONT[" "]).ljust(35, ".")[:35]
    return np.array([[c == "#" for c in bits[r * 5:(r + 1) * 5]] for r in range(7)], dtype=bool)


def _text(img: np.ndarray, x: int, y: int, s: str, colour=(0, 0, 0), scale: int = 1) -> None:
    for i, ch in enumerate(s):
        g = np.kron(_glyph(ch), np.ones((scale, scale), dtype=bool))
        x0 = x + i * 6 * scale
        h, w = g.shape
        if y < 0 or x0 < 0 or y + h > img.shape[0] or x0 + w > img.shape[1]:
            continue
        img[y:y + h, x0:x0 + w][g] = colour


def _line(img: np.ndarray, x0, y0, x1, y1, colour, width: int = 2, dotted: bool = False) -> None:
    n = int(max(abs(x1 - x0), abs(y1 - y0), 1))
    for k in range(n + 1):
        if dotted and (k // 4) % 2:
            continue
        x = int(round(x0 + (x1 - x0) * k / n))
        y = int(round(y0 + (y1 - y0) * k / n))
        img[max(0, y - width // 2):y + (width + 1) // 2, max(0, x - width // 2):x + (width + 1) // 2] = colour


def _fmt(v: float) -> str:
    if 100 <= v < 1e4 and v != int(v):
        return f"{v:.0f}"
    if v >= 1e6:
        return f"{v / 1e6:g}M"
    if v >= 1e3:
        return f"{v / 1e3:g}k"
    return f"{v:g}"


def _panel(img, left, top, w, h, sizes, series, dotted_series, title, hline=None):
    img[top:top + h, left] = (0, 0, 0)
    img[top + h, left:left + w] = (0, 0, 0)
    xs = [math.log10(s) for s in sizes]
    xmin, xmax = (min(xs) - 0.15, max(xs) + 0.15) if xs else (0, 1)
    values = [v for d in (series, dotted_series) for vals in d.values() for v in vals if v is not None]
    if hline:
        values.append(hline)
    ymax = max(values) * 1.1 if values else 1.0

    def px(s):
        return left + int((math.log10(s) - xmin) / (xmax - xmin) * w)

    def py(v):
        return top + h - int(v / ymax * h)

    for frac in (0.25, 0.5, 0.75, 1.0):
        v = ymax * frac
        img[py(v), left:left + w:3] = (200, 200, 200)
        label = _fmt(round(v)) if v >= 100 else _fmt(round(v, 1))
        _text(img, left - 6 * len(label) - 4, py(v) - 3, label)
    for s in sizes:
        _text(img, px(s) - 6, top + h + 6, _fmt(s))
    if hline:
        _line(img, left, py(hline), left + w, py(hline), (220, 0, 0), width=1)
    for i, (name, vals) in enumerate(series.items()):
        c = COLOURS[i % len(COLOURS)]
        pts = [(px(s), py(v)) for s, v in zip(sizes, vals) if v is not None]
        for (a, b), (cc, d) in zip(pts, pts[1:]):
            _line(img, a, b, cc, d, c)
        for a, b in pts:
            img[b - 3:b + 4, a - 3:a + 4] = c
        if name in dotted_series:
            dp = [(px(s), py(v)) for s, v in zip(sizes, dotted_series[name]) if v is not None]
            for (a, b), (cc, d) in zip(dp, dp[1:]):
                _line(img, a, b, cc, d, c, width=1, dotted=True)
    _text(img, left, top - 16, title, scale=1)
    _text(img, left + w // 2 - 27, top + h + 20, "customers")


def _draw_numpy(scaling: dict, path: Path) -> Path:
    sizes, feeds, time_, floor, rss = _series(scaling)
    W, H = 1100, 460
    img = np.full((H, W, 3), 255, dtype=np.uint8)
    _panel(img, 60, 40, 420, 330, sizes, time_, floor, "feed time s (dotted: floor)")
    _panel(img, 620, 40, 420, 330, sizes, rss, {}, "peak rss mb (red: 1 gb)", hline=1024)
    for i, f in enumerate(feeds):  # legend
        c = COLOURS[i % len(COLOURS)]
        x, y = 60 + (i % 4) * 260, 410 + (i // 4) * 16
        img[y:y + 7, x:x + 14] = c
        _text(img, x + 20, y, f.replace("_", " ")[:38])
    _write_png(path, img)
    return path


def _write_png(path: Path, img: np.ndarray) -> None:
    h, w, _ = img.shape
    raw = b"".join(b"\x00" + img[y].tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
    Path(path).write_bytes(png)
