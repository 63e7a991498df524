"""The register-wide data map: the record of processing, one row per vendor feed, as CSV and HTML.

Columns: vendor, who they are for the notice (recipient category, service provider or third party), purpose,
the data categories that leave (with their transforms), who may be included (eligibility rules), transport and
encryption, schedule, how erasure reaches them, and retention. The register declares no general retention
period per vendor: where it names a legal retention exemption (e.g. payment records) it is shown; otherwise
the row says that the register declares none (a gap for the privacy team to fill, not a fact to invent).
"""
from __future__ import annotations

import csv
import io
import os
from functools import lru_cache
from html import escape
from pathlib import Path

from vendorprivacy.policy.models import Notice, Register

COLUMNS = ["vendor", "vendor_name", "feed", "recipient_category", "recipient_title", "relationship", "purpose",
           "purpose_label", "data_categories", "fields", "eligibility", "transport", "encryption", "schedule", "window",
           "erasure_protocol", "erasure_identifiers", "retention", "owner", "contact"]
RULE_LABELS = {"min_age_13": "13 or older", "min_age_16": "16 or older", "no_sale_share_opt_out": "no sale/share opt-out",
               "no_gpc": "no GPC signal", "eea_ad_consent": "EEA: advertising consent",
               "marketing_opt_in": "marketing opt-in"}


@lru_cache(maxsize=1)
def _labels() -> dict[str, str]:
    from fideslang.default_taxonomy import DEFAULT_TAXONOMY

    out = {c.fides_key: c.name for c in DEFAULT_TAXONOMY.data_category}
    out.update({u.fides_key: u.name for u in DEFAULT_TAXONOMY.data_use})
    return out


def label(key: str) -> str:
    """fideslang's human name for a data category or use (the key itself when it has none)."""
    return _labels().get(key) or key


def rows(register: Register, notice: Notice) -> list[dict]:
    out = []
    for v, feed in register.feeds():
        rc = notice.recipient_categories.get(v.recipient_category)
        cats = sorted({f.category for f in feed.sent_fields})
        fields = "; ".join(f"{f.name} ({f.transform}{'/' + f.normaliser if f.normaliser else ''})" for f in feed.sent_fields)
        exemptions = "; ".join(f"{e.category}: {e.reason}" for e in v.erasure.retention_exemptions)
        out.append({
            "vendor": v.vendor, "vendor_name": v.name, "feed": feed.id, "recipient_category": v.recipient_category,
            "recipient_title": rc.title if rc else "(not in the notice)",
            "relationship": ("third party (sale/sharing)" if rc.relationship == "third_party" else "service provider")
            if rc else "unknown",
            "purpose": v.purpose, "purpose_label": label(v.purpose),
            "data_categories": "; ".join(f"{c} ({label(c)})" for c in cats), "fields": fields,
            "eligibility": "; ".join(RULE_LABELS.get(r, r) for r in feed.eligibility) + "; never erased people",
            "transport": v.transport.kind, "encryption": "OpenPGP" if v.encryption.method == "pgp" else "TLS",
            "schedule": feed.schedule, "window": feed.window,
            "erasure_protocol": v.erasure.protocol,
            "erasure_identifiers": "; ".join(f"{i.type} ({i.format})" for i in v.erasure.identifiers),
            "retention": exemptions or "not declared in the register",
            "owner": v.owner, "contact": v.contact,
        })
    return out


def to_csv(data: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(data)
    return buf.getvalue()


def to_html(data: list[dict], notice: Notice) -> str:
    head = "".join(f"<th>{escape(c.replace('_', ' '))}</th>" for c in COLUMNS if c not in ("vendor_name", "recipient_category",
                                                                                         "purpose_label"))
    body = []
    for r in data:
        cells = []
        for c in COLUMNS:
            if c in ("vendor_name", "recipient_category", "purpose_label"):
                continue
            value = r[c]
            if c == "vendor":
                value = f"{r['vendor_name']} ({r['vendor']})"
            elif c == "purpose":
                value = f"{r['purpose_label']} ({r['purpose']})"
            elif c == "recipient_title":
                value = f"{r['recipient_title']} ({r['recipient_category']})"
            style = ' style="color:#b26a00"' if c == "retention" and value.startswith("not declared") else ""
            cells.append(f"<td{style}>{escape(str(value)).replace('; ', '<br>')}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Data map: {escape(notice.notice)}</title>
<style>body{{font-family:system-ui,Segoe UI,Roboto,Helvetica,Arial,sans-serif;margin:24px;color:#1d1d1f}}
table{{border-collapse:collapse;font-size:13px}}th,td{{border:1px solid #ddd;padding:6px 8px;vertical-align:top;text-align:left}}
th{{background:#f4f4f4}}</style></head><body>
<h1>Data map: who receives what, why, and how</h1>
<p>The record of processing for <i>{escape(notice.notice)}</i>, generated from the vendor register
(<code>include/policy/vendors/</code>) and the notice. One row per vendor feed. Data categories and purposes are
fideslang keys with their names.</p>
<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></body></html>
"""


def write_data_map(register: Register, notice: Notice, folder: Path) -> dict[str, Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = rows(register, notice)
    paths = {"data_map_csv": folder / "data_map.csv", "data_map_html": folder / "data_map.html"}
    for key, text in (("data_map_csv", to_csv(data)), ("data_map_html", to_html(data, notice))):
        tmp = paths[key].with_name(f".{paths[key].name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, paths[key])
    return paths
