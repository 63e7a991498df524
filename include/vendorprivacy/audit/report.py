"""The night's report: HTML for people (charts drawn inline as SVG, no network needed) and a JSON twin for machines.

Written to <reports>/audit/<day>/minimisation_audit.html and .json, beside the register's data map
(data_map.csv / .html); <reports>/audit/latest.html and latest.json are copies of the newest night.
Nothing in either file is personal data: vendor and feed ids, field and column names, data categories,
counts, dates, checksums and batch ids (the JSON is checked for that in the tests).
"""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from html import escape
from pathlib import Path

import sqlalchemy as sa

from . import charts
from . import findings as fd
from .context import AuditContext

FORMAT = "vendorprivacy.audit-report/1"
HTML_NAME, JSON_NAME = "minimisation_audit.html", "minimisation_audit.json"
CHECK_OF_KIND = {"delivery": "delivery", "vendor_copy": "delivery", "schema_drift": "schema_drift",
                 "register_drift": "register_drift", "consent_drift": "consent_drift", "deadline": "deadline"}


def _category_rows(ctx: AuditContext) -> tuple[list[dict], list[str]]:
    """Per vendor: categories that left in the last 12 months (ledger) and what the notice allows its recipients."""
    from vendorprivacy.ledger import tables as t

    d = t.deliveries.c
    since = ctx.day - dt.timedelta(days=365)
    shared: dict[str, set[str]] = {}
    with ctx.ledger.engine.connect() as conn:
        for vendor, fields in conn.execute(sa.select(d.vendor, d.fields).where(
                d.status == "delivered", d.logical_date >= since, d.logical_date <= ctx.day)):
            shared.setdefault(vendor, set()).update(f.get("category") for f in (fields or []) if f.get("category"))
    rows, columns = [], set()
    for vid in sorted(set(ctx.register.vendors) | set(shared)):
        v = ctx.register.vendors.get(vid)
        rc_key = v.recipient_category if v else None
        rc = ctx.notice.recipient_categories.get(rc_key) if rc_key else None
        allowed = sorted(ctx.notice.allowed_categories(rc_key)) if rc_key else []
        s = sorted(shared.get(vid, set()))
        columns.update(s)
        columns.update(allowed)
        rows.append({"vendor": vid, "recipient": rc.title if rc else "not in the register",
                     "recipient_category": rc_key, "shared": s, "allowed_by_notice": allowed,
                     "declared": sorted({f.category for feed in v.feeds for f in feed.sent_fields}) if v else []})
    return rows, sorted(columns)


def _missing_check(name: str) -> fd.Finding:
    kind = {"delivery": "delivery"}.get(name, name)
    return fd.Finding(kind, fd.CRITICAL, f"the {fd.KINDS[kind][0].lower()} check did not complete tonight",
                      advice="The night is not proven: see the task's log, fix the cause and re-run the audit.",
                      facts={"check": name, "rule": "check_incomplete"})


def build(ctx: AuditContext, results: list[dict | None], *, started_at: dt.datetime | None = None,
          expected=None) -> dict:
    from .deadlines import BUCKETS
    from .deliveries import history
    from .run import CHECKS

    done = {r["check"]: r for r in results if r}
    found = [fd.Finding.from_dict(f) for r in done.values() for f in r["findings"]]
    found += [_missing_check(name) for name in (expected or CHECKS) if name not in done]
    found = fd.order(found)
    hist = history(ctx)
    first = ctx.day - dt.timedelta(days=ctx.history_days - 1)
    vendors = sorted(set(ctx.register.vendors) | {h["vendor"] for h in hist})
    cat_rows, cat_cols = _category_rows(ctx)
    pairs = (done.get("deadline") or {}).get("stats", {}).get("pairs")
    if pairs is None:
        try:
            from vendorprivacy.erasure import store as st

            from .deadlines import bucket_of

            counted: dict[tuple[str, str, str], int] = {}
            for p in ctx.erasure_store.pairs(statuses=st.OPEN):
                key = (p.vendor, bucket_of((p.due - ctx.day).days), p.status)
                counted[key] = counted.get(key, 0) + 1
            pairs = [{"vendor": v, "bucket": b, "status": s, "count": n} for (v, b, s), n in sorted(counted.items())]
        except Exception:  # noqa: BLE001 - the chart shows what is known
            pairs = []
    now = dt.datetime.now(dt.timezone.utc)
    return {
        "format": FORMAT,
        "audit": {"day": ctx.day.isoformat(), "window": [d.isoformat() for d in ctx.window], "run_id": ctx.run_id,
                  "started_at": (started_at or now).isoformat(timespec="seconds"),
                  "generated_at": now.isoformat(timespec="seconds")},
        "verdict": fd.verdict(found),
        "counts": fd.counts(found),
        "findings": [f.to_dict() for f in found],
        "checks": {name: {**{k: v for k, v in r["stats"].items() if k != "pairs"}, "seconds": r["seconds"],
                          "findings": len(r["findings"])} for name, r in done.items()},
        "charts": {
            "deliveries": {"first": first.isoformat(), "last": ctx.day.isoformat(), "vendors": vendors, "history": hist},
            "categories": {"categories": cat_cols, "rows": cat_rows},
            "deadlines": {"buckets": [b[0] for b in BUCKETS], "vendors": vendors,
                          "pairs": [{k: p.get(k, 1) for k in ("vendor", "bucket", "status", "count")} for p in pairs]},
        },
    }


# ------------------------------------------------------------------------------------------------ HTML
CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;margin:0;color:#1d1d1f;background:#f6f7f9}
main{max-width:1180px;margin:0 auto;padding:24px 28px 48px}
h1{font-size:24px;margin:0 0 4px} h2{font-size:18px;margin:32px 0 10px} .sub{color:#555;margin:0 0 18px}
.verdict{border-radius:10px;padding:16px 20px;color:#fff;font-size:17px;margin:14px 0 20px}
.verdict b{font-size:20px;margin-right:8px}.pass{background:#2e7d32}.attention{background:#ef8f00}.fail{background:#c62828}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:10px}
.card{background:#fff;border-radius:8px;padding:12px 14px;box-shadow:0 1px 2px rgba(0,0,0,.08)}
.card .n{font-size:22px;font-weight:600}.card .l{color:#555;font-size:13px}
table{border-collapse:collapse;width:100%;background:#fff;box-shadow:0 1px 2px rgba(0,0,0,.08);border-radius:8px;overflow:hidden}
th,td{text-align:left;padding:8px 10px;border-bottom:1px solid #eee;vertical-align:top;font-size:14px}
th{background:#fafafa;font-weight:600}
.sev{display:inline-block;border-radius:10px;padding:1px 9px;font-size:12px;font-weight:600;color:#fff}
.sev.critical{background:#c62828}.sev.warning{background:#ef8f00}.sev.info{background:#607d8b}
.advice{color:#444;font-size:13px;margin-top:4px} details{font-size:12px;color:#555;margin-top:4px}
details pre{white-space:pre-wrap;background:#f4f4f4;padding:6px;border-radius:4px}
figure{background:#fff;border-radius:8px;padding:14px;margin:0 0 16px;box-shadow:0 1px 2px rgba(0,0,0,.08);overflow-x:auto}
figcaption{color:#555;font-size:13px;margin-top:6px} .none{color:#2e7d32;font-weight:600}
code{background:#eef;padding:0 4px;border-radius:3px} footer{color:#666;font-size:12px;margin-top:30px}
"""

SENTENCE = {
    "pass": "No problems found. Every delivery of the night matches the register and the notice, every vendor copy "
            "read back matches what left, and nothing else needs attention.",
    "attention": "Nothing breaks the notice tonight, but some findings need a person to look.",
    "fail": "At least one promise of the privacy notice may be broken: the critical findings below need action today.",
}

# Drawn-check: after layout, count the charts that really have a size (the browser test reads this attribute).
DRAWN_SCRIPT = """<script>
(function(){var n=0;document.querySelectorAll('svg.chart').forEach(function(s){var b=s.getBBox();
if(b.width>0&&b.height>0&&s.querySelectorAll('rect,circle,line').length>0){n++;s.setAttribute('data-drawn','1');}});
document.body.setAttribute('data-charts-drawn',String(n));})();
</script>"""


def _card(n, label: str) -> str:
    return f'<div class="card"><div class="n">{escape(str(n))}</div><div class="l">{escape(label)}</div></div>'


def _facts(facts) -> str:
    return escape(json.dumps(facts, indent=1, sort_keys=True, default=str))


def render_html(report: dict, links: dict[str, str] | None = None) -> str:
    a, counts, verdict = report["audit"], report["counts"], report["verdict"]
    checks = report["checks"]
    ch = report["charts"]
    dl = checks.get("delivery", {})
    copies = dl.get("copies", {})
    sd, cd, de = checks.get("schema_drift", {}), checks.get("consent_drift", {}), checks.get("deadline", {})
    cards = [
        _card(dl.get("delivered", "–"), "deliveries re-checked"),
        _card(f"{copies.get('verified', 0)} / {dl.get('delivered', 0)}", "vendor copies read back and matching"),
        _card(sd.get("new_columns", "–"), f"new columns in {sd.get('tables', '–')} source tables"),
        _card(cd.get("people_checked", "–"), "people in vendors' latest deliveries re-checked against consent and age"),
        _card(cd.get("people_in_removal_lists", 0), "people sent to advertising partners' removal lists tonight"),
        _card(de.get("open_pairs", "–"), "open erasure requests at vendors"),
    ]
    groups: dict[tuple, list[dict]] = {}  # one row per finding; the same finding for several feeds shares a row
    for f in report["findings"]:
        groups.setdefault((f["severity"], f["kind"], f["title"], f["advice"]), []).append(f)
    rows = []
    for (severity, kind, title, advice), fs in groups.items():
        where = "<br>".join(" › ".join(escape(x) for x in (f["vendor"], f["feed"]) if x) or "—" for f in fs)
        facts = fs[0]["facts"] if len(fs) == 1 else [f["facts"] for f in fs]
        rows.append(
            f'<tr class="finding {severity}" data-kind="{escape(kind)}" '
            f'data-vendor="{escape(" ".join(f["vendor"] or "" for f in fs))}" '
            f'data-feed="{escape(" ".join(f["feed"] or "" for f in fs))}"><td><span class="sev {severity}">{severity}</span>'
            f'</td><td>{escape(fd.KINDS[kind][0])}</td><td>{where}</td><td>{escape(title)}'
            f'<div class="advice">{escape(advice)}</div><details><summary>details</summary>'
            f'<pre>{_facts(facts)}</pre></details></td></tr>')
    table = ("<table><thead><tr><th>severity</th><th>check</th><th>vendor › feed</th><th>what was found, and what to do"
             "</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>") if rows else \
        '<p class="none">No findings tonight.</p>'
    deliveries_svg = charts.deliveries_chart(ch["deliveries"]["history"], ch["deliveries"]["vendors"],
                                             dt.date.fromisoformat(ch["deliveries"]["first"]),
                                             dt.date.fromisoformat(ch["deliveries"]["last"]))
    matrix_svg = charts.category_matrix(ch["categories"]["rows"], ch["categories"]["categories"])
    deadline_svg = charts.deadline_chart(ch["deadlines"]["pairs"], ch["deadlines"]["buckets"], ch["deadlines"]["vendors"])
    checked = "".join(f"<li><b>{escape(label)}</b>: {escape(text)} <i>({checks[k]['findings']} finding(s), "
                      f"{checks[k]['seconds']:.2f} s)</i></li>" if k in checks else
                      f"<li><b>{escape(label)}</b>: {escape(text)} <i>(not run)</i></li>"
                      for k, (label, text) in fd.KINDS.items() if k != "vendor_copy")
    link_html = " · ".join(f'<a href="{escape(href)}">{escape(name)}</a>' for name, href in (links or {}).items())
    window = a["window"][0] if a["window"][0] == a["window"][1] else f"{a['window'][0]} to {a['window'][1]}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>Minimisation audit {escape(a['day'])}: {verdict.upper()}</title><style>{CSS}</style></head>
<body data-verdict="{verdict}"><main>
<h1>Nightly minimisation audit — {escape(a['day'])}</h1>
<p class="sub">Deliveries of {escape(window)} re-checked against today's register and privacy notice · generated
{escape(a['generated_at'])} · run <code>{escape(a['run_id'])}</code></p>
<div class="verdict {verdict}"><b>{verdict.upper()}</b>{counts['critical']} critical · {counts['warning']} warning ·
{counts['info']} info — {escape(SENTENCE[verdict])}</div>
<div class="cards">{''.join(cards)}</div>
<h2>Findings</h2>{table}
<h2>Charts</h2>
<figure>{deliveries_svg}<figcaption>Each row is one vendor; each bar one day's deliveries, its height the rows that
left (each row has its own scale; the total is on the right). A missing bar on a day the vendor's schedule expects
one is worth a look.</figcaption></figure>
<figure>{matrix_svg}<figcaption>Rows: vendors and the recipient category the notice puts them in. Columns: data
categories. Green ✓: shared in the last 12 months and declared by the notice for that recipient category. Red ✗:
shared but not declared — a broken promise. Hollow: the notice would allow it, nothing was shared.</figcaption></figure>
<figure>{deadline_svg}<figcaption>Every erasure or opt-out request still waiting on a vendor, by the days left to its
legal due date (CCPA 45 days, GDPR one month, opt-outs 15 business days). Anything in "overdue" is a critical
finding above.</figcaption></figure>
<h2>What was checked</h2><ul>{checked}</ul>
<footer>{link_html}<br>This report holds no personal data: vendor and feed names, field and column names, data
categories, counts, dates and checksums only. Format {escape(report['format'])}.</footer>
</main>{DRAWN_SCRIPT}</body></html>
"""


def _atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write(ctx: AuditContext, report: dict) -> dict[str, Path]:
    """Write the report, its JSON twin and the data map for this night; refresh latest.*; record the run."""
    from . import tables as at
    from .datamap import write_data_map

    out = ctx.out_dir
    out.mkdir(parents=True, exist_ok=True)
    html_path, json_path = out / HTML_NAME, out / JSON_NAME
    map_paths = write_data_map(ctx.register, ctx.notice, out)
    links = {"JSON twin": JSON_NAME, "data map (HTML)": map_paths["data_map_html"].name,
             "data map (CSV)": map_paths["data_map_csv"].name}
    report = {**report, "files": {"html": HTML_NAME, "json": JSON_NAME, **{k: v.name for k, v in map_paths.items()}}}
    _atomic(json_path, json.dumps(report, indent=2, default=str))
    _atomic(html_path, render_html(report, links))
    latest = Path(ctx.reports_dir) / "audit"
    for src, name in ((html_path, "latest.html"), (json_path, "latest.json")):
        tmp = latest / f".{name}.tmp"
        shutil.copyfile(src, tmp)
        os.replace(tmp, latest / name)
    if (latest / "latest.html").exists():  # latest.html links to the night's folder, not to siblings
        text = (latest / "latest.html").read_text(encoding="utf-8")
        for target in (JSON_NAME, map_paths["data_map_html"].name, map_paths["data_map_csv"].name):
            text = text.replace(f'href="{target}"', f'href="{ctx.day.isoformat()}/{target}"')
        _atomic(latest / "latest.html", text)
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    started = dt.datetime.fromisoformat(report["audit"]["started_at"]).replace(tzinfo=None)
    row = {"run_id": ctx.run_id, "audit_day": ctx.day, "started_at": started, "finished_at": now,
           "verdict": report["verdict"], **report["counts"], "report_html": str(html_path), "report_json": str(json_path)}
    with ctx.ledger.engine.begin() as conn:
        conn.execute(at.audit_runs.delete().where(at.audit_runs.c.run_id == ctx.run_id))
        conn.execute(at.audit_runs.insert().values(**row))
    return {"report_html": html_path, "report_json": json_path, **map_paths}
