"""PII hygiene scan of a running stack: every synthetic customer's e-mail, phone and name, searched in
Airflow's metadata database (XCom, run conf, rendered task fields, the log table, task instances, HITL
details, ...), the task log files, the components' logs and the reports (evidence, alerts, dry runs).

E-mails are matched as tokens (every e-mail-like token in the text, lower-cased, against the customers'
normalised e-mails); phones (as stored and in E.164) and full names ("First Last") as substrings,
case-insensitively. Counts are per (source, kind); a hit never prints the value itself.
"""
from __future__ import annotations

import re
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

# Airflow metadata tables that carry values a DAG author or a task controls (and the audit log).
TABLES = ("xcom", "dag_run", "rendered_task_instance_fields", "log", "task_instance", "task_instance_history",
          "hitl_detail", "hitl_detail_history", "dag_run_note", "task_instance_note", "trigger", "task_reschedule",
          "deadline", "callback", "variable", "job", "import_error", "asset_event")
EMAIL_RE = re.compile(r"[A-Za-z0-9._%+'\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+")
TEXT_SUFFIXES = {".log", ".json", ".html", ".txt", ".csv", ".md", ""}


@dataclass
class Needles:
    emails: set[str] = field(default_factory=set)
    substrings: dict[str, str] = field(default_factory=dict)   # lower-cased needle -> kind (phone | name)

    def __len__(self) -> int:
        return len(self.emails) + len(self.substrings)


def needles(shop: Path) -> Needles:
    from vendorprivacy.minimise.normalise import phone_e164

    out = Needles()
    con = sqlite3.connect(shop)
    for email, phone, country, first, last in con.execute(
            "SELECT email, phone, phone_country, first_name, last_name FROM customers"):
        if email and email.strip():
            out.emails.add(email.strip().lower())
        if phone and len(re.sub(r"\D", "", phone)) >= 7:
            out.substrings[phone.strip().lower()] = "phone"
            e164 = phone_e164(phone, country)
            if e164:
                out.substrings[e164] = "phone"
        if first and last:
            out.substrings[f"{first} {last}".lower()] = "name"
    return out


def metadata_texts(metadata_url: str, tables=TABLES) -> list[tuple[str, str]]:
    """(table, every row as text) for each table that exists."""
    eng = sa.create_engine(metadata_url)
    out = []
    with eng.connect() as conn:
        present = set(sa.inspect(conn).get_table_names())
        for table in tables:
            if table in present:
                rows = conn.execute(sa.text(f'SELECT t::text FROM "{table}" t')).scalars().all()
                out.append((f"db:{table}", "\n".join(rows)))
    eng.dispose()
    return out


def file_texts(label: str, root: Path) -> list[tuple[str, str]]:
    out = []
    if root.exists():
        for p in sorted(root.rglob("*")):
            if p.is_file() and p.suffix in TEXT_SUFFIXES:
                out.append((label, p.read_text(errors="replace")))
    return out


def stack_haystacks(stack) -> list[tuple[str, str]]:
    return (metadata_texts(stack.metadata_url)
            + file_texts("task logs", stack.airflow_home / "logs")
            + file_texts("component logs", stack.log_dir)
            + file_texts("reports", stack.reports_dir))


def scan(needles_: Needles, haystacks: list[tuple[str, str]]) -> Counter:
    """Counter of (source, kind) -> number of distinct needles found there."""
    by_source: dict[str, list[str]] = {}
    for source, text in haystacks:
        by_source.setdefault(source, []).append(text)
    hits: Counter = Counter()
    for source, texts in by_source.items():
        text = "\n".join(texts).lower()
        tokens = {m.group(0).strip(".'-") for m in EMAIL_RE.finditer(text)}
        hits[(source, "email")] += len(tokens & needles_.emails)
        for needle, kind in needles_.substrings.items():
            if needle in text:
                hits[(source, kind)] += 1
    return hits


def sizes(haystacks: list[tuple[str, str]]) -> Counter:
    c: Counter = Counter()
    for source, text in haystacks:
        c[source] += len(text)
    return c
