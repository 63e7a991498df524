"""Headless Chromium (Debian's `chromium`): open a report as a person would, check its charts were drawn, take a
screenshot. Loopback/file only: every network feature Chromium has is switched off."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         "--disable-extensions", "--mute-audio"]


def find_chromium() -> str | None:
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "/usr/bin/chromium"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    exe = find_chromium()
    if exe is None:
        raise FileNotFoundError("chromium is not installed (Debian: apt-get install -y chromium)")
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        return subprocess.run([exe, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, timeout=timeout,
                              env={**os.environ, "HOME": profile})


def dump_dom(html: Path, timeout: float = 60) -> str:
    """The DOM after the page's scripts ran (the report marks each drawn chart and counts them on <body>)."""
    out = _run(["--virtual-time-budget=3000", "--dump-dom", Path(html).resolve().as_uri()], timeout)
    return out.stdout.decode("utf-8", errors="replace")


def charts_drawn(dom: str) -> int:
    m = re.search(r'data-charts-drawn="([0-9]+)"', dom)
    return int(m.group(1)) if m else 0


def screenshot(html: Path, png: Path, width: int = 1240, height: int = 2400, timeout: float = 60) -> Path:
    png = Path(png).resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    _run([f"--screenshot={png}", f"--window-size={width},{height}", "--virtual-time-budget=3000",
          Path(html).resolve().as_uri()], timeout)
    if not png.exists():
        raise RuntimeError("chromium wrote no screenshot")
    return png


def png_size(png: Path) -> tuple[int, int]:
    """(width, height) from the PNG header."""
    data = Path(png).read_bytes()[:24]
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
