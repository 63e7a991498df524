"""Erasure benchmark: a batch of requests filed at once, from trigger to every (request, vendor) pair final.

Uses the erasure package's public steps, as ``propagate.run_once`` calls them (select, resolve & suppress,
plan, submit per vendor, poll until answered, finish), each timed against the sandbox vendors, which answer at once (OpenDSR delay 0, file
vendors polled every 0.2 s). Filing the requests (validation, sealing) is timed apart: the privacy team does
it before the trigger. The vendors' share of the time (from our "sent" to their answer) is reported apart.
"""
from __future__ import annotations

import datetime as dt
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

from bench.common import DAY, IDENTITY_KEY, KEYS, emit, peak_rss_mb  # noqa: F401


def _subjects(shop: str, n: int) -> list[dict]:
    """n customers, advertising-eligible first (they reached every vendor), with what a request carries."""
    import sqlalchemy as sa

    from vendorprivacy.minimise.eligibility import eligible_ids_query
    from vendorprivacy.policy import load_register

    _, ads = load_register().feed("adgrid_customer_match")
    sql, params = eligible_ids_query(ads, DAY)
    eng = sa.create_engine(shop)
    with eng.connect() as conn:
        eligible = [r[0] for r in conn.execute(sa.text(sql + " ORDER BY c.customer_id LIMIT :n"), {**params, "n": n})]
        chosen = set(eligible)
        if len(eligible) < n:
            more = conn.execute(sa.text("SELECT customer_id FROM customers ORDER BY customer_id")).scalars()
            for cid in more:
                if len(chosen) >= n:
                    break
                chosen.add(cid)
        rows = []
        ids = sorted(chosen)
        for i in range(0, len(ids), 900):
            part = ids[i:i + 900]
            q = sa.text("SELECT customer_id, email, is_eea FROM customers WHERE customer_id IN :ids").bindparams(
                sa.bindparam("ids", expanding=True))
            rows += [dict(r) for r in conn.execute(q, {"ids": part}).mappings()]
    eng.dispose()
    return rows


def run_batch(shop: str, ledger_url: str, work: str, requests: int, wait_seconds: float = 600) -> dict:
    """Runs in the child process (with the sandbox's AIRFLOW_CONN_* in its environment)."""
    from vendorprivacy.erasure import propagate, store as st
    from vendorprivacy.erasure.identity import identity_cipher
    from vendorprivacy.erasure.intake import file_requests
    from vendorprivacy.keys import Keys
    from vendorprivacy.ledger import Ledger
    from vendorprivacy.policy import load_notice, load_register

    t = time.perf_counter()
    import vendorprivacy.erasure.protocols.opendsr  # noqa: F401 - warm worker imports, reported apart
    import vendorprivacy.erasure.protocols.s3_removal  # noqa: F401
    import vendorprivacy.erasure.protocols.sftp_ack  # noqa: F401
    imports = time.perf_counter() - t

    store = st.ErasureStore(Ledger(ledger_url))
    cipher = identity_cipher(IDENTITY_KEY)
    work_dir = Path(work)
    work_dir.mkdir(parents=True, exist_ok=True)
    ctx = propagate.Context(store=store, shop_url=shop, keys=Keys(*KEYS), cipher=cipher, register=load_register(),
                            notice=load_notice(), reports_dir=work_dir / "reports",
                            protocol_options={"work_dir": str(work_dir / "protocol")})
    (work_dir / "protocol").mkdir(exist_ok=True)

    subjects = _subjects(shop, requests)
    tag = uuid.uuid4().hex[:6]
    rows = [(i + 2, {"ticket": f"BENCH-{tag}-{i}", "regulation": "gdpr" if s["is_eea"] else "ccpa",
                     "type": "erasure", "email": (s["email"] or "").strip(), "received": DAY.isoformat()})
            for i, s in enumerate(subjects)]
    t = time.perf_counter()
    filed = file_requests(store, cipher, rows, source="csv", today=DAY + dt.timedelta(days=1))
    filing = time.perf_counter() - t
    ids = [f.request_id for f in filed]

    # propagate.run_once's steps, called one by one so each is timed (same order, same arguments)
    steps: dict[str, float] = {}
    t = time.perf_counter()

    def lap(name: str, t_prev: float) -> float:
        now = time.perf_counter()
        steps[name] = round(steps.get(name, 0.0) + now - t_prev, 3)
        return now

    sel = propagate.select_requests(ctx, "all pending")
    t1 = lap("select_s", t)
    propagate.resolve_and_suppress(ctx, sel["request_ids"], dry_run=False)
    t1 = lap("resolve_and_suppress_s", t1)
    plan = propagate.plan_batches(ctx, f"bench-{tag}", sel["request_ids"])
    t1 = lap("plan_s", t1)
    for p in plan:
        propagate.submit_vendor(ctx, p["vendor"], p["batches"])
        t1 = lap(f"submit.{p['vendor']}_s", t1)
    deadline = time.monotonic() + wait_seconds
    polls = []
    rounds = 0
    while True:
        rounds += 1
        polls = []
        for p in plan:
            polls.append(propagate.poll_vendor(ctx, p["vendor"], p["batches"]))
            t1 = lap(f"poll.{p['vendor']}_s", t1)
        if not any(x["open"] for x in polls) or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
        t1 = lap("waiting_s", t1)
    propagate.finish(ctx, sel["request_ids"])
    lap("finish_s", t1)
    batch_s = time.perf_counter() - t
    steps["poll_rounds"] = rounds

    pairs = store.pairs(ids)
    statuses = Counter(p.status for p in pairs)
    final = sum(1 for p in pairs if p.status in st.FINAL)
    per_vendor = Counter(p.vendor for p in pairs)
    # the vendors' share: from our first "sent" to their last answer, per vendor (includes our polling)
    sent_at: dict[str, dt.datetime] = {}
    answered_at: dict[str, dt.datetime] = {}
    timelines = store.timelines(ids)
    for events in timelines.values():
        for e in events:
            vendor = e.scope  # a vendor's events are scoped by the vendor's id
            if vendor == st.REQUEST_SCOPE:
                continue
            if e.event == "sent":
                sent_at[vendor] = min(sent_at.get(vendor, e.at), e.at)
            elif e.event in ("acknowledged", "completed", "not_found", "retained", "failed"):
                answered_at[vendor] = max(answered_at.get(vendor, e.at), e.at)
    vendor_delay = {v: round((answered_at[v] - sent_at[v]).total_seconds(), 3)
                    for v in sorted(sent_at) if v in answered_at}
    return {"requests": len(ids), "pairs": len(pairs), "pairs_final": final, "all_final": final == len(pairs),
            "pairs_by_status": dict(sorted(statuses.items())), "pairs_by_vendor": dict(sorted(per_vendor.items())),
            "vendors": len(per_vendor), "filing_s": round(filing, 3), "batch_s": round(batch_s, 3),
            "steps": steps, "vendor_answer_span_s": vendor_delay,
            "sandbox_vendor_delay": {"opendsr_delay_s": 0.0, "opendsr_tick_s": 0.1, "file_vendor_poll_s": 0.2},
            "worker_imports_s": round(imports, 3), "peak_rss_mb": peak_rss_mb()}


def _tmp() -> str:
    return tempfile.mkdtemp(prefix="bench-erasure-")
