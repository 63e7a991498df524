"""Charts as inline SVG, drawn here in Python: the report needs no JavaScript library and no network.

Each function takes plain, PII-free data and returns one <svg class="chart" data-chart="..."> element:

  deliveries_chart   deliveries and rows per vendor over time (one row of bars per vendor, own scale)
  category_matrix    data categories shared per vendor, against what the notice declares for its recipients
  deadline_chart     open erasure (request, vendor) pairs by days to their legal due date, stacked by vendor
"""
from __future__ import annotations

import datetime as dt
from html import escape

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f",
           "#d62728"]
FONT = "font-family:system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif"


def vendor_colours(vendors) -> dict[str, str]:
    return {v: PALETTE[i % len(PALETTE)] for i, v in enumerate(sorted(vendors))}


def _svg(kind: str, width: int, height: int, title: str, body: list[str]) -> str:
    return (f'<svg class="chart" data-chart="{kind}" xmlns="http://www.w3.org/2000/svg" role="img" '
            f'aria-label="{escape(title)}" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'style="{FONT};font-size:12px">'
            f"<title>{escape(title)}</title>" + "".join(body) + "</svg>")


def _text(x: float, y: float, s: str, *, anchor: str = "start", size: int = 12, weight: str = "normal",
          fill: str = "#222", extra: str = "") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" font-weight="{weight}" '
            f'fill="{fill}" {extra}>{escape(str(s))}</text>')


def _fmt(n: float) -> str:
    n = int(n)
    return f"{n / 1_000_000:.1f}M" if n >= 1_000_000 else f"{n / 1000:.1f}k" if n >= 10_000 else f"{n:,}"


# ------------------------------------------------------------------------------------------ deliveries
def deliveries_chart(history: list[dict], vendors: list[str], first: dt.date, last: dt.date) -> str:
    """history: [{day: 'YYYY-MM-DD', vendor, rows}], one entry per delivery."""
    days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
    left, right, row_h, top = 120, 150, 34, 34
    plot_w = max(300, min(720, 18 * len(days)))
    width = left + plot_w + right
    height = top + row_h * max(1, len(vendors)) + 34
    step = plot_w / len(days)
    bar_w = max(2.0, step * 0.7)
    colours = vendor_colours(vendors)
    body = [_text(0, 16, f"Deliveries and rows per vendor, {first} to {last} (each row on its own scale)",
                  weight="600", size=13)]
    by = {(h["vendor"], h["day"]): 0 for h in history}
    count: dict[tuple[str, str], int] = {}
    for h in history:
        by[(h["vendor"], h["day"])] += int(h["rows"] or 0)
        count[(h["vendor"], h["day"])] = count.get((h["vendor"], h["day"]), 0) + 1
    for i, v in enumerate(vendors):
        y0 = top + i * row_h
        base = y0 + row_h - 8
        body.append(f'<line x1="{left}" y1="{base}" x2="{left + plot_w}" y2="{base}" stroke="#ccc"/>')
        body.append(_text(left - 8, base - 6, v, anchor="end", weight="600"))
        vmax = max([by.get((v, d.isoformat()), 0) for d in days] + [1])
        total_rows = sum(by.get((v, d.isoformat()), 0) for d in days)
        total_n = sum(count.get((v, d.isoformat()), 0) for d in days)
        for j, d in enumerate(days):
            key = (v, d.isoformat())
            if key not in count:
                continue
            rows = by[key]
            h = max(2.0, (row_h - 14) * rows / vmax)
            x = left + j * step + (step - bar_w) / 2
            body.append(f'<rect class="bar" x="{x:.1f}" y="{base - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                        f'fill="{colours[v]}"><title>{escape(v)} {d}: {count[key]} delivery(ies), {rows:,} rows</title></rect>')
        body.append(_text(left + plot_w + 8, base - 6, f"{total_n} deliv. · {_fmt(total_rows)} rows", fill="#444"))
    axis_y = top + row_h * max(1, len(vendors)) + 14
    marks = sorted({0, len(days) - 1, *range(0, len(days), max(1, len(days) // 6))})
    for j in marks:
        body.append(_text(left + j * step + step / 2, axis_y, days[j].strftime("%d %b"), anchor="middle", size=11,
                          fill="#555"))
    if not vendors:
        body.append(_text(left, top + 18, "No deliveries in this period.", fill="#555"))
    return _svg("deliveries", width, height, "Deliveries and rows per vendor over time", body)


# ------------------------------------------------------------------------------------------ categories
def category_matrix(rows: list[dict], categories: list[str]) -> str:
    """rows: [{vendor, recipient (title), shared: [cat], allowed_by_notice: [cat], declared: [cat]}].

    A cell is: shared and allowed (green ✓), shared but NOT allowed by the notice (red ✗), allowed by the notice
    for this vendor's recipient category but not shared (hollow), or neither (dot)."""
    from vendorprivacy.policy.taxonomy import covered_by

    cell, left, top = 26, 380, 190
    width = left + cell * max(1, len(categories)) + 20
    height = top + cell * max(1, len(rows)) + 56
    body = [_text(0, 16, "Data categories shared per vendor (last 12 months) against the notice", weight="600", size=13)]
    for j, c in enumerate(categories):
        x = left + j * cell + cell / 2
        body.append(_text(x, top - 8, c.removeprefix("user."), anchor="start", size=11, fill="#333",
                          extra=f'transform="rotate(-55 {x:.1f} {top - 8})"'))
    for i, r in enumerate(rows):
        y = top + i * cell
        body.append(_text(left - 8, y + cell / 2 + 4, f"{r['vendor']} — {r['recipient']}"[:62], anchor="end", size=11))
        shared, allowed = set(r["shared"]), set(r["allowed_by_notice"])
        for j, c in enumerate(categories):
            x = left + j * cell
            ok = covered_by(c, allowed)
            if c in shared and ok:
                body.append(f'<rect class="cell shared-allowed" x="{x + 2}" y="{y + 2}" width="{cell - 4}" height="{cell - 4}" '
                            f'rx="3" fill="#2e7d32"><title>{escape(r["vendor"])}: {escape(c)} shared, allowed by the notice'
                            f'</title></rect>' + _text(x + cell / 2, y + cell / 2 + 5, "✓", anchor="middle", fill="#fff",
                                                       weight="700", size=13))
            elif c in shared:
                body.append(f'<rect class="cell shared-not-allowed" x="{x + 2}" y="{y + 2}" width="{cell - 4}" '
                            f'height="{cell - 4}" rx="3" fill="#c62828"><title>{escape(r["vendor"])}: {escape(c)} shared, '
                            f'NOT declared by the notice</title></rect>' +
                            _text(x + cell / 2, y + cell / 2 + 5, "✗", anchor="middle", fill="#fff", weight="700", size=13))
            elif ok:
                body.append(f'<rect class="cell allowed" x="{x + 4}" y="{y + 4}" width="{cell - 8}" height="{cell - 8}" '
                            f'rx="3" fill="none" stroke="#66bb6a" stroke-width="1.5"><title>{escape(r["vendor"])}: '
                            f'{escape(c)} allowed by the notice, not shared</title></rect>')
            else:
                body.append(f'<circle cx="{x + cell / 2}" cy="{y + cell / 2}" r="2" fill="#ccc"/>')
    ly = top + cell * max(1, len(rows)) + 22
    legend = [("#2e7d32", "shared, declared in the notice"), ("#c62828", "shared, NOT declared in the notice"),
              (None, "declared in the notice, not shared")]
    x = 0
    for colour, label in legend:
        if colour:
            body.append(f'<rect x="{x}" y="{ly - 11}" width="14" height="14" rx="3" fill="{colour}"/>')
        else:
            body.append(f'<rect x="{x + 1}" y="{ly - 10}" width="12" height="12" rx="3" fill="none" stroke="#66bb6a" '
                        f'stroke-width="1.5"/>')
        body.append(_text(x + 20, ly, label, size=11))
        x += 36 + 7 * len(label)
    return _svg("categories", width, height, "Data categories shared per vendor against the notice", body)


# ------------------------------------------------------------------------------------------ deadlines
def deadline_chart(pairs: list[dict], buckets: list[str], vendors: list[str]) -> str:
    """pairs: [{vendor, bucket, count}] (count defaults to 1: one entry per open erasure pair)."""
    left, top, plot_h, bar_w, gap = 56, 40, 180, 64, 36
    width = left + len(buckets) * (bar_w + gap) + 190
    height = top + plot_h + 50
    colours = vendor_colours(vendors)
    counts = {(b, v): 0 for b in buckets for v in vendors}
    for p in pairs:
        counts[(p["bucket"], p["vendor"])] = counts.get((p["bucket"], p["vendor"]), 0) + int(p.get("count", 1))
    totals = {b: sum(counts.get((b, v), 0) for v in vendors) for b in buckets}
    vmax = max(list(totals.values()) + [1])
    body = [_text(0, 16, "Open erasure requests per vendor, by days to the legal due date", weight="600", size=13)]
    base = top + plot_h
    body.append(f'<line x1="{left}" y1="{base}" x2="{left + len(buckets) * (bar_w + gap)}" y2="{base}" stroke="#999"/>')
    for tick in sorted({0, vmax, (vmax + 1) // 2}):
        y = base - plot_h * tick / vmax
        body.append(f'<line x1="{left - 4}" y1="{y:.1f}" x2="{left + len(buckets) * (bar_w + gap)}" y2="{y:.1f}" '
                    f'stroke="#eee"/>' + _text(left - 8, y + 4, str(tick), anchor="end", size=11, fill="#555"))
    for i, b in enumerate(buckets):
        x = left + gap / 2 + i * (bar_w + gap)
        y = base
        for v in vendors:
            n = counts.get((b, v), 0)
            if not n:
                continue
            h = plot_h * n / vmax
            y -= h
            body.append(f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{bar_w}" height="{h:.1f}" fill="{colours[v]}">'
                        f'<title>{escape(v)}: {n} open pair(s), {escape(b)}</title></rect>')
        colour = "#c62828" if b == "overdue" else "#222"
        body.append(_text(x + bar_w / 2, base + 18, b, anchor="middle", size=11, fill=colour,
                          weight="600" if b == "overdue" else "normal"))
        if totals[b]:
            body.append(_text(x + bar_w / 2, y - 6, str(totals[b]), anchor="middle", size=11, weight="600"))
    lx = left + len(buckets) * (bar_w + gap) + 16
    shown = [v for v in vendors if any(counts.get((b, v), 0) for b in buckets)]
    for i, v in enumerate(shown):
        body.append(f'<rect x="{lx}" y="{top + i * 18}" width="12" height="12" fill="{colours[v]}"/>' +
                    _text(lx + 18, top + i * 18 + 11, v, size=11))
    if not pairs:
        body.append(_text(left + 12, top + plot_h / 2, "No open erasure requests: nothing is waiting on a vendor.",
                          fill="#2e7d32", size=13))
    return _svg("deadlines", width, height, "Open erasure pairs by days to deadline", body)
