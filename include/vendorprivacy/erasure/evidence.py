"""Evidence per request: a JSON report (for machines and auditors) and an HTML page (for people).

What it shows: the request (ticket, regulation, type, received, due dates), the suppression, who approved,
each vendor's outcome with its reference and, for retained data, the vendor's legal reason; the checksums
and sizes of the erasure lists that were sent; and the whole timeline. What it never shows: e-mails,
phones, names, order or device ids. Subjects appear at most as their pseudonymous ledger keys.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import html
import json
import os
from pathlib import Path

REPORT_VERSION = 1


def reports_dir() -> Path:
    """VENDORPRIVACY_REPORTS_DIR/erasure, else <state dir>/reports/erasure (.state/reports/erasure by default)."""
    if os.environ.get("VENDORPRIVACY_REPORTS_DIR"):
        return Path(os.environ["VENDORPRIVACY_REPORTS_DIR"]) / "erasure"
    from vendorprivacy.orchestration.settings import DEFAULT_STATE

    return DEFAULT_STATE / "reports" / "erasure"


def _iso(v):
    if isinstance(v, (dt.datetime, dt.date)):
        return v.isoformat()
    return v


def build_report(ctx, request_id: str) -> dict:
    reports = build_reports(ctx, [request_id])
    if request_id not in reports:
        raise KeyError(f"no request {request_id}")
    return reports[request_id]


def build_reports(ctx, request_ids) -> dict[str, dict]:
    """Every request's report, from a few bulk queries."""
    store = ctx.store
    reqs = store.requests(request_ids)
    ids = [r.request_id for r in reqs]
    pairs_by: dict[str, list] = {}
    for p in store.pairs(ids) if ids else []:
        pairs_by.setdefault(p.request_id, []).append(p)
    batches = store.batches(p.batch_id for ps in pairs_by.values() for p in ps if p.batch_id)
    timelines = store.timelines(ids)
    generated = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    return {r.request_id: _report(ctx, r, pairs_by.get(r.request_id, []), batches, timelines[r.request_id], generated)
            for r in reqs}


def _report(ctx, req, pairs, batches, timeline, generated) -> dict:
    answered, why = {}, {}
    for e in timeline:
        if e.scope != "request" and e.event in ("acknowledged", "completed", "not_found", "retained", "failed"):
            answered[e.scope] = e.at
        if e.scope != "request" and e.from_status is None and e.event in ("queued", "not_applicable", "failed"):
            why[e.scope] = e.detail
    approvals = [{"decision": e.event, "by": e.actor, "at": _iso(e.at)} for e in timeline
                 if e.scope == "request" and e.event in ("approved", "rejected")]
    vendors = []
    for p in pairs:
        b = batches.get(p.batch_id) if p.batch_id else None
        v = ctx.register.vendors.get(p.vendor)
        vendors.append({
            "vendor": p.vendor, "name": v.name if v else p.vendor,
            "protocol": v.erasure.protocol if v else None,
            "status": p.status, "final": p.final, "reason": p.reason, "why_notified": why.get(p.vendor),
            "received_subject": p.received_subject, "identifier_types": p.identifier_types or {},
            "vendor_reference": p.vendor_reference, "answer_sha256": p.evidence_sha256,
            "answered_at": _iso(answered.get(p.vendor)),
            "sent": None if not b or b["status"] != "submitted" else {
                "batch_id": b["batch_id"], "submitted_at": _iso(b["submitted_at"]), "sha256": b["sha256"],
                "bytes": b["bytes"], "batch_pairs": b["pair_count"], "vendor_reference": b["vendor_reference"]},
        })
    return {
        "report_version": REPORT_VERSION,
        "generated_at": generated,
        "request": {
            "request_id": req.request_id, "ticket": req.ticket, "regulation": req.regulation,
            "type": req.request_type, "source": req.source, "status": req.status,
            "received_on": _iso(req.received_on), "acknowledge_by": _iso(req.ack_due), "due": _iso(req.due),
            "extended_due": _iso(req.extended_due) if req.extension_noticed_on else None,
            "extension_noticed_on": _iso(req.extension_noticed_on), "due_in_force": _iso(req.effective_due),
            "filed_at": _iso(req.filed_at), "resolved_at": _iso(req.resolved_at),
            "suppressed_at": _iso(req.suppressed_at), "completed_at": _iso(req.completed_at),
            "identifiers_purged_at": _iso(req.purged_at), "identifier_types_filed": req.identifier_types or [],
            "subject_keys": req.subject_keys or [],
        },
        "approval": approvals,
        "vendors": vendors,
        "summary": {s: sum(1 for x in vendors if x["status"] == s) for s in sorted({x["status"] for x in vendors})},
        "timeline": [{"at": _iso(e.at), "scope": e.scope, "event": e.event, "from": e.from_status, "actor": e.actor,
                      "detail": e.detail, "evidence_sha256": e.evidence_sha256} for e in timeline],
    }


_STATUS_COLOUR = {"completed": "#1a7f37", "not_found": "#57606a", "retained": "#9a6700", "failed": "#cf222e",
                  "not_applicable": "#8c959f", "queued": "#0969da", "sent": "#0969da", "acknowledged": "#0969da"}


def render_html(report: dict) -> str:
    e = lambda v: html.escape("" if v is None else str(v))  # noqa: E731
    r = report["request"]
    rows = "".join(
        f"<tr><td>{e(v['name'])}<br><small>{e(v['vendor'])} · {e(v['protocol'])}</small></td>"
        f"<td><b style='color:{_STATUS_COLOUR.get(v['status'], '#000')}'>{e(v['status'])}</b></td>"
        f"<td>{e(v['reason'])}</td><td>{e(v['vendor_reference'])}</td>"
        f"<td>{e(', '.join(f'{k} ×{n}' for k, n in v['identifier_types'].items()))}</td>"
        f"<td>{'' if not v['sent'] else e(v['sent']['submitted_at']) + '<br><code>' + e(v['sent']['sha256']) + '</code> ' + e(v['sent']['bytes']) + ' bytes'}</td>"
        f"<td>{e(v['answered_at'])}</td></tr>" for v in report["vendors"])
    timeline = "".join(
        f"<tr><td>{e(t['at'])}</td><td>{e(t['scope'])}</td><td>{e(t['event'])}</td><td>{e(t['from'])}</td>"
        f"<td>{e(t['actor'])}</td><td>{e(t['detail'])}</td><td><code>{e((t['evidence_sha256'] or '')[:16])}</code></td></tr>"
        for t in report["timeline"])
    approval = "; ".join(f"{a['decision']} by {a['by']} at {a['at']}" for a in report["approval"]) or "not required"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Request {e(r['ticket'])}: {e(r['type'])}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;color:#1f2328}}table{{border-collapse:collapse;width:100%;margin:1rem 0}}
td,th{{border:1px solid #d0d7de;padding:.35rem .5rem;vertical-align:top;font-size:.9rem;text-align:left}}th{{background:#f6f8fa}}
code{{font-size:.8rem}}.k{{color:#57606a}}</style></head><body>
<h1>{e(r['regulation']).upper()} {e(r['type']).replace('_', '-')} request {e(r['ticket'])}</h1>
<p><span class="k">Status</span> <b>{e(r['status'])}</b> · <span class="k">received</span> {e(r['received_on'])}
 · <span class="k">due</span> {e(r['due_in_force'])}{' (extended)' if r['extended_due'] else ''}
 · <span class="k">acknowledge by</span> {e(r['acknowledge_by'] or '—')}</p>
<p><span class="k">Suppressed from feeds</span> {e(r['suppressed_at'] or '—')} ·
 <span class="k">completed</span> {e(r['completed_at'] or '—')} ·
 <span class="k">identifiers purged</span> {e(r['identifiers_purged_at'] or '—')} ·
 <span class="k">approval</span> {e(approval)}</p>
<p class="k">Request id {e(r['request_id'])} · subject keys {e(len(r['subject_keys']))} · identifiers filed:
 {e(', '.join(r['identifier_types_filed']))}. This report holds no e-mail, phone or name.</p>
<h2>Vendors</h2>
<table><tr><th>vendor</th><th>outcome</th><th>reason</th><th>vendor reference</th><th>identifiers sent</th>
<th>sent (checksum)</th><th>answered</th></tr>{rows}</table>
<h2>Timeline</h2>
<table><tr><th>at (UTC)</th><th>scope</th><th>event</th><th>from</th><th>by</th><th>detail</th><th>evidence</th></tr>{timeline}</table>
<p class="k">Generated {e(report['generated_at'])}.</p></body></html>
"""


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _write_one(out: Path, request_id: str, report: dict) -> str:
    data = json.dumps(report, indent=2, sort_keys=False).encode()
    _write(out / f"{request_id}.json", data)
    _write(out / f"{request_id}.html", render_html(report).encode())
    return hashlib.sha256(data).hexdigest()


def write_evidence_many(ctx, request_ids) -> int:
    """Write every request's JSON and HTML; for each complete (and purged) request, record the final report's
    checksum in its timeline, once. Returns how many requests were written."""
    out = Path(ctx.reports_dir)
    final = []
    reports = build_reports(ctx, request_ids)
    for rid, report in reports.items():
        sha = _write_one(out, rid, report)
        if report["request"]["status"] == "complete" and report["request"]["identifiers_purged_at"]:
            final.append((rid, sha))
    if final:
        with ctx.store.engine.begin() as conn:
            ctx.store.add_events_once(conn, [ctx.store._event_row(rid, "request", "evidence", actor="system",
                                                                  evidence_sha256=sha, detail=f"final report {rid}.json")
                                             for rid, sha in final])
    return len(reports)


def write_evidence(ctx, request_id: str) -> dict:
    """One request's evidence (see write_evidence_many). Returns paths and checksum."""
    out = Path(ctx.reports_dir)
    report = build_report(ctx, request_id)
    sha = _write_one(out, request_id, report)
    if report["request"]["status"] == "complete" and report["request"]["identifiers_purged_at"]:
        ctx.store.record_request_event([request_id], "evidence", actor="system", evidence_sha256=sha,
                                       detail=f"final report {request_id}.json")
    return {"json": str(out / f"{request_id}.json"), "html": str(out / f"{request_id}.html"), "sha256": sha}
