"""Source-schema drift: columns added to the shop tables that feeds read, reported before anyone sends them.

Which tables: every table a feed's query reads (FROM / JOIN). What is "added": a column that is neither in
the reviewed shop schema (vendorprivacy.shop.schema) nor accepted by a person (`vendorprivacy audit
accept-column`). A table the reviewed schema does not know (a production shop) is taken as it is the first
night the audit sees it (its baseline); columns that appear after that are drift.

Each new column gets a personal-data guess (vendorprivacy.audit.piiguess: name patterns and a sample of up to
`sample_rows` values, counted against patterns and dropped at once; no value is stored, logged or reported),
and one finding per feed that reads its table. A column that looks personal is a warning: nothing has been
sent (a feed only sends the fields the register declares), but someone should decide before a feed does.
The finding is repeated every night until the column is reviewed, and says since when it has been there.
"""
from __future__ import annotations

import re

import sqlalchemy as sa

from . import tables as at
from .context import AuditContext
from .findings import INFO, WARNING, Finding
from .piiguess import guess

_TABLE_RE = re.compile(r"\b(?:from|join)\s+(?:[A-Za-z_][A-Za-z0-9_]*\s*\.\s*)?([A-Za-z_][A-Za-z0-9_]*)", re.I)


def tables_read(register) -> dict[str, list[tuple[str, str]]]:
    """{table: [(vendor, feed), ...]} for every table a feed's query reads."""
    out: dict[str, list[tuple[str, str]]] = {}
    for vendor, feed in register.feeds():
        for table in dict.fromkeys(m.group(1).lower() for m in _TABLE_RE.finditer(feed.query)):
            out.setdefault(table, []).append((vendor.vendor, feed.id))
    return dict(sorted(out.items()))


def reviewed_schema() -> dict[str, set[str]]:
    """The shop schema as reviewed (code in vendorprivacy.shop.schema): {table: {column, ...}}."""
    from vendorprivacy.shop.schema import SHOP_TABLES

    return {name: {c.name for c in table.columns} for name, table in SHOP_TABLES.items()}


def _sample(conn, table: str, column: str, n: int) -> list:
    col = sa.column(column)
    q = sa.select(col).select_from(sa.table(table)).where(col.isnot(None)).limit(n)
    return [r[0] for r in conn.execute(q)]


def drift(ctx: AuditContext) -> tuple[list[Finding], dict]:
    from vendorprivacy.source import engine

    eng = engine(ctx.shop_url)
    insp = sa.inspect(eng)
    reviewed = reviewed_schema()
    readers = tables_read(ctx.register)
    c = at.audit_source_columns.c
    with ctx.ledger.engine.connect() as lconn:
        seen = {(r.table_name, r.column_name): r for r in lconn.execute(sa.select(at.audit_source_columns))}
    findings: list[Finding] = []
    new_rows: list[dict] = []
    guesses: dict[tuple[str, str], dict] = {}
    stats = {"tables": 0, "columns": 0, "new_columns": 0, "likely_personal": 0}
    with eng.connect() as sconn:
        for table, feeds in readers.items():
            if not insp.has_table(table):
                for vendor, feed in feeds:
                    findings.append(Finding("schema_drift", WARNING, f"feed reads table '{table}', which the shop no "
                                            "longer has", vendor, feed, "The feed will fail: fix its query or the shop.",
                                            {"table": table, "rule": "table_missing"}))
                continue
            stats["tables"] += 1
            columns = insp.get_columns(table)
            first_time = table not in reviewed and not any(k[0] == table for k in seen)
            for col in columns:
                name = col["name"]
                stats["columns"] += 1
                row = seen.get((table, name))
                baseline = name in reviewed.get(table, ()) or first_time
                if row is None:
                    new_rows.append({"table_name": table, "column_name": name, "data_type": str(col["type"])[:100],
                                     "first_seen": ctx.day, "baseline": baseline, "accepted_by": None,
                                     "accepted_reason": None, "guess": None})
                known = baseline or (row is not None and (row.baseline or row.accepted_by))
                if known:
                    continue
                stats["new_columns"] += 1
                g = guess(name, _sample(sconn, table, name, ctx.sample_rows))  # the sample is dropped here
                guesses[(table, name)] = g.to_dict()
                first_seen = row.first_seen if row is not None else ctx.day
                personal = g.likelihood in ("likely", "possible")
                stats["likely_personal"] += g.likelihood == "likely"
                why = "; ".join(g.reasons) or "no personal-data pattern in its name or sampled values"
                title = (f"new column '{table}.{name}' ({g.likelihood} personal data"
                         f"{': ' + g.category if g.category else ''})" if personal else
                         f"new column '{table}.{name}' (no sign of personal data)")
                advice = ("Decide before any feed sends it: if a feed should, declare the field in the register with "
                          "its data category (and the notice must allow it); if not, accept the column "
                          "(vendorprivacy audit accept-column) so it stops being reported. Feeds send declared "
                          "fields only, so nothing has left yet." if personal else
                          "Accept the column once reviewed (vendorprivacy audit accept-column).")
                for vendor, feed in feeds:
                    findings.append(Finding(
                        "schema_drift", WARNING if personal else INFO, title, vendor, feed, advice,
                        {"table": table, "column": name, "data_type": str(col["type"]),
                         "first_seen": str(first_seen), "likelihood": g.likelihood, "category": g.category,
                         "signals": {"name": g.name_signal, "values": g.value_signals, "sampled": g.sampled},
                         "why": why, "rule": "new_column"}))
    with ctx.ledger.engine.begin() as lconn:
        if new_rows:
            lconn.execute(at.audit_source_columns.insert(), new_rows)
        for (table, name), g in guesses.items():
            lconn.execute(at.audit_source_columns.update().where(c.table_name == table, c.column_name == name)
                          .values(guess=g))
    return findings, stats


def accept_column(ledger, table: str, column: str, by: str, reason: str) -> bool:
    """A person reviewed the column: stop reporting it. False when the audit has never seen it."""
    c = at.audit_source_columns.c
    with ledger.engine.begin() as conn:
        done = conn.execute(at.audit_source_columns.update().where(c.table_name == table, c.column_name == column)
                            .values(accepted_by=by, accepted_reason=reason[:500])).rowcount
    return bool(done)

