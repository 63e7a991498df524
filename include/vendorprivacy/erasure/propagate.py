"""The steps of an erasure run, independent of Airflow (the DAG calls them; so do the CLI and the tests).

  select_requests       "all pending" or ticket references -> request ids
  resolve_and_suppress  find each subject in the shop; in ONE transaction suppress them (erasure: every feed;
                        opt-out: sale/sharing feeds) and record each (request, vendor) pair. Dry run: no writes.
  plan_batches          per vendor: the batch of its queued pairs (id fixed in the ledger before sending)
  submit_vendor         send the vendor its planned batches by its protocol (idempotent per batch id)
  poll_vendor           ask the vendor for answers; each answer moves a pair along the state machine
  finish                mark complete requests, write evidence, purge identifiers of complete requests

Every return value is PII-free (ids, counts, statuses), because Airflow keeps it in XCom.
"""
from __future__ import annotations

import datetime as dt
import logging
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from vendorprivacy.keys import Keys
from vendorprivacy.policy.models import Notice, Register, Vendor

from . import store as st
from .identifiers import identifier_counts, vendor_identifiers
from .identity import IdentityCipher
from .recipients import plan_recipients
from .requests import SubjectIdentity
from .resolve import ResolvedSubject, resolve_many

log = logging.getLogger(__name__)
ALL_PENDING = "all pending"


class SelectionError(ValueError):
    pass


@dataclass
class Context:
    store: st.ErasureStore
    shop_url: str
    keys: Keys
    cipher: IdentityCipher
    register: Register
    notice: Notice
    reports_dir: Path
    protocol_factory: Callable[[Vendor], object] | None = None
    protocol_options: dict = field(default_factory=dict)
    callback_base_url: str | None = None     # OpenDSR processors call back here (plugins/erasure_callbacks.py)
    _protocols: dict = field(default_factory=dict, repr=False)

    @property
    def ledger(self):
        return self.store.ledger

    def protocol(self, vendor_id: str):
        if vendor_id not in self._protocols:
            vendor = self.register.vendor(vendor_id)
            if self.protocol_factory is not None:
                self._protocols[vendor_id] = self.protocol_factory(vendor)
            else:
                options = dict(self.protocol_options)
                if self.callback_base_url and vendor.erasure.protocol == "opendsr":
                    from .callbacks import callback_url

                    options["callback_urls"] = [callback_url(self.callback_base_url, vendor_id)]
                self._protocols[vendor_id] = contract().protocol_for(vendor, **options)
        return self._protocols[vendor_id]


def context_from_settings(protocol_factory=None, **protocol_options) -> Context:
    """A Context from the Airflow connections / environment (vendorprivacy.orchestration.settings)."""
    from vendorprivacy.orchestration import settings
    from vendorprivacy.policy import load_notice, load_register

    from .evidence import reports_dir
    from .identity import identity_cipher

    from .callbacks import base_url

    return Context(store=st.ErasureStore(settings.ledger()), shop_url=settings.shop_url(), keys=settings.keys(),
                   cipher=identity_cipher(), register=load_register(), notice=load_notice(),
                   reports_dir=reports_dir(), protocol_factory=protocol_factory, protocol_options=protocol_options,
                   callback_base_url=base_url())


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


# ------------------------------------------------------------------------------------------- select
def parse_selector(selector: str | None) -> list[str] | None:
    """None for all pending requests, else the ticket references (comma, semicolon or space separated)."""
    text = (selector or "").strip()
    if not text or text.lower().replace("_", " ") in (ALL_PENDING, "all", "pending"):
        return None
    tickets = [x for x in re.split(r"[,;\s]+", text) if x]
    from .requests import TICKET_RE

    bad = [i + 1 for i, x in enumerate(tickets) if not TICKET_RE.match(x)]
    if bad:
        raise SelectionError(f"'requests' must be 'all pending' or ticket references (letters, digits . _ / -); "
                             f"item(s) {', '.join(map(str, bad))} are not ticket references")
    return tickets


def select_requests(ctx: Context, selector: str | None) -> dict:
    tickets = parse_selector(selector)
    if tickets is None:
        chosen = ctx.store.pending()
        return {"selector": ALL_PENDING, "request_ids": [r.request_id for r in chosen], "requests": len(chosen),
                "unknown_tickets": [], "already_complete": []}
    found = ctx.store.requests(tickets=tickets)
    known = {r.ticket for r in found}
    unknown = [x for x in tickets if x not in known]
    if unknown:
        raise SelectionError(f"no request has ticket(s) {', '.join(unknown)}; nothing was done")
    open_ = [r for r in found if r.status != st.COMPLETE]
    done = sorted({r.ticket for r in found} - {r.ticket for r in open_})
    return {"selector": ",".join(tickets), "request_ids": [r.request_id for r in open_], "requests": len(open_),
            "unknown_tickets": [], "already_complete": done}


# --------------------------------------------------------------------------- resolve and suppress
def _resolved(ctx: Context, request_id: str, sealed: tuple) -> ResolvedSubject:
    _, resolved_ct, key_id = sealed
    if resolved_ct is None:
        raise st.IllegalTransition(f"request {request_id} has no resolved identifiers (purged or never resolved)")
    return ResolvedSubject.from_json(ctx.cipher.open(resolved_ct, aad=request_id, key_id=key_id))


def resolve_and_suppress(ctx: Context, request_ids: list[str], *, dry_run: bool) -> dict:
    """Resolve every filed request of the selection, then (unless dry run) in ONE transaction suppress the subjects
    and record the pairs. Requests resolved by an earlier run are left as they are (idempotent)."""
    started = time.perf_counter()
    reqs = ctx.store.requests(request_ids)
    todo = [r for r in reqs if r.status == st.FILED]
    sealed = ctx.store.sealed_many(r.request_id for r in todo)
    identities = {}
    for r in todo:
        identity_ct, _, key_id = sealed[r.request_id]
        identities[r.request_id] = SubjectIdentity.from_json(ctx.cipher.open(identity_ct, aad=r.request_id, key_id=key_id))
    resolved = resolve_many(ctx.shop_url, identities) if identities else {}
    subject_keys = {rid: [ctx.keys.subject_key_of(c) for c in rs.customer_ids] for rid, rs in resolved.items()}
    received = ctx.ledger.recipients_of_many(k for ks in subject_keys.values() for k in ks)

    plans: dict[str, list] = {}
    per_vendor: dict[str, Counter] = {v: Counter() for v in ctx.register.vendors}
    id_types: dict[str, Counter] = {v: Counter() for v in ctx.register.vendors}
    for r in todo:
        rs = resolved[r.request_id]
        got = set().union(*(received.get(k, set()) for k in subject_keys[r.request_id])) if subject_keys[r.request_id] else set()
        counts = {vid: identifier_counts(vendor_identifiers(v, rs, ctx.keys)) for vid, v in ctx.register.vendors.items()}
        plans[r.request_id] = plan_recipients(r.request_type, got, ctx.register, ctx.notice, counts)
        for p in plans[r.request_id]:
            per_vendor[p.vendor][p.status] += 1
            if p.status == st.QUEUED:
                id_types[p.vendor].update(p.identifier_types)

    summary = {
        "dry_run": dry_run,
        "requests": len(reqs),
        "newly_resolved": len(todo),
        "already_in_progress": sum(r.status == st.IN_PROGRESS for r in reqs),
        "subjects_found_in_shop": sum(bool(resolved[r.request_id].customer_ids) for r in todo),
        "subjects_not_in_shop": sum(not resolved[r.request_id].customer_ids for r in todo),
        "customer_records": sum(len(resolved[r.request_id].customer_ids) for r in todo),
        "vendors": {v: {"pairs": dict(per_vendor[v]), "identifier_types": dict(id_types[v])}
                    for v in sorted(per_vendor)},
        "requests_detail": [{"ticket": r.ticket, "type": r.request_type, "regulation": r.regulation,
                             "due": r.effective_due.isoformat(), "customer_records": len(resolved[r.request_id].customer_ids),
                             "vendors": {p.vendor: p.status for p in plans[r.request_id]}}
                            for r in todo],
    }
    if dry_run:
        summary["suppressed_keys"] = 0
        summary["seconds"] = round(time.perf_counter() - started, 3)
        return summary

    at = _now()
    suppressed = 0
    records = []
    with ctx.store.engine.begin() as conn:  # suppression first, and all of it at once, with the pairs
        erase_keys = [(r.ticket, subject_keys[r.request_id]) for r in todo if r.request_type == "erasure"]
        opt_keys = [(r.ticket, subject_keys[r.request_id]) for r in todo if r.request_type == "opt_out"]
        for ticket, keys in erase_keys:
            suppressed += ctx.ledger.suppress(keys, "erasure", ticket, conn=conn)
        for ticket, keys in opt_keys:
            suppressed += ctx.ledger.record_opt_out(keys, ticket, conn=conn)
        for r in todo:
            keys = subject_keys[r.request_id]
            rs = resolved[r.request_id]
            note = (f"{len(keys)} subject key(s) excluded from every later feed" if r.request_type == "erasure" else
                    f"{len(keys)} subject key(s) excluded from sale/sharing (third-party) feeds")
            records.append({
                "request_id": r.request_id, "resolved_ct": ctx.cipher.seal(rs.to_json(), aad=r.request_id),
                "subject_keys": keys, "pairs": [p.to_row() for p in plans[r.request_id]],
                "suppression": note if keys else None,
                "detail": f"{len(rs.customer_ids)} customer record(s), {len(rs.order_ids)} order(s), "
                          f"{len(rs.device_ids)} device(s) found in the shop"})
        ctx.store.record_resolutions(conn, records, at=at)
    completed = ctx.store.refresh_status(r.request_id for r in todo)
    summary["suppressed_keys"] = suppressed
    summary["completed_without_vendors"] = len(completed)
    summary["seconds"] = round(time.perf_counter() - started, 3)
    return summary


# ------------------------------------------------------------------------------------------- batches
def plan_batches(ctx: Context, run_id: str, request_ids: list[str]) -> list[dict]:
    """One entry per vendor with something to do: its new batch (queued pairs) and batches awaiting answers."""
    out = []
    open_pairs = ctx.store.pairs(request_ids, statuses=st.OPEN)
    by_vendor: dict[str, set[str]] = {}
    for p in open_pairs:
        by_vendor.setdefault(p.vendor, set())
    for vendor in sorted(by_vendor):
        new_batch, n = ctx.store.assign_batch(vendor, run_id, request_ids)
        batches = sorted({p.batch_id for p in ctx.store.pairs(request_ids, vendor=vendor, statuses=st.OPEN) if p.batch_id})
        pairs = sum(1 for p in open_pairs if p.vendor == vendor)
        out.append({"vendor": vendor, "batches": batches, "new_batch": new_batch, "new_pairs": n, "open_pairs": pairs})
    return out


def contract():
    """The protocol contract module (ErasureItem, Outcome, SubmitReceipt, protocol_for)."""
    try:
        from . import protocols as mod

        mod.ErasureItem  # noqa: B018 - the package re-exports the contract
        return mod
    except (ImportError, AttributeError):
        from .protocols import base as mod

        return mod


def _items(ctx: Context, vendor: str, batch: dict, pairs: list[st.PairView]) -> list:
    ErasureItem = contract().ErasureItem

    v = ctx.register.vendor(vendor)
    sealed = ctx.store.sealed_many(p.request_id for p in pairs)
    submitted = batch["created_at"].replace(tzinfo=dt.timezone.utc)
    items = []
    for p in pairs:
        rs = _resolved(ctx, p.request_id, sealed[p.request_id])
        items.append(ErasureItem(pair_id=p.pair_id, regulation=p.regulation, request_type=p.request_type,
                                 identifiers=vendor_identifiers(v, rs, ctx.keys), submitted_at=submitted))
    return items


def submit_vendor(ctx: Context, vendor: str, batch_ids: list[str]) -> dict:
    """Send each planned batch (a crashed run resubmits the same batch id: the protocol does not send twice)."""
    result = {"vendor": vendor, "submitted": [], "already_submitted": 0, "pairs_sent": 0}
    batches = ctx.store.batches(batch_ids)
    for bid in sorted(batches):
        b = batches[bid]
        pairs = ctx.store.pairs(batch_ids=[bid], statuses=[st.QUEUED])
        if not pairs:  # sent already (by this run's earlier try or an earlier run): never send again
            continue
        receipt = ctx.protocol(vendor).submit(bid, _items(ctx, vendor, b, pairs))
        counts = ctx.store.record_submission(bid, sha256=receipt.sha256, size=receipt.bytes,
                                             vendor_reference=receipt.vendor_reference)
        result["submitted"].append({"batch_id": bid, "pairs": len(pairs), "sha256": receipt.sha256,
                                    "bytes": receipt.bytes, "already_submitted": receipt.already_submitted})
        result["already_submitted"] += int(bool(receipt.already_submitted))
        result["pairs_sent"] += counts["applied"]
    return result


def poll_vendor(ctx: Context, vendor: str, batch_ids: list[str]) -> dict:
    """Ask the vendor about its submitted batches; apply each answer. Returns counts and how many pairs stay open."""
    counts = Counter()
    batches = ctx.store.batches(batch_ids)
    for bid in sorted(batches):
        b = batches[bid]
        if b["status"] != "submitted":
            continue
        pairs = ctx.store.pairs(batch_ids=[bid], statuses=[st.SENT, st.ACKNOWLEDGED])
        if not pairs:
            continue
        known = {p.pair_id for p in pairs} | {p.pair_id for p in ctx.store.pairs(batch_ids=[bid])}
        outcomes = ctx.protocol(vendor).poll(bid, _items(ctx, vendor, b, pairs))
        changes = []
        for o in outcomes:
            if o.pair_id not in known:
                counts["unknown_pair"] += 1
                log.warning("vendor %s answered for pair %s, which is not in batch %s: ignored", vendor, o.pair_id, bid)
                continue
            changes.append({"pair_id": o.pair_id, "to": o.status, "at": o.at, "evidence_sha256": o.evidence_sha256,
                            "reason": o.reason, "vendor_reference": o.vendor_reference, "actor": vendor})
        result = ctx.store.transition_many(changes, batch_id=bid)
        for pid, why in result.pop("refused"):
            counts["refused"] += 1
            log.warning("vendor %s: answer for pair %s refused: %s", vendor, pid, why)
        counts.update({k: v for k, v in result.items() if v})
    still_open = len(ctx.store.pairs(batch_ids=list(batches), statuses=[st.SENT, st.ACKNOWLEDGED]))
    queued = len(ctx.store.pairs(batch_ids=list(batches), statuses=[st.QUEUED]))
    return {"vendor": vendor, "open": still_open, "unsent": queued, **{k: v for k, v in counts.items()}}


# ------------------------------------------------------------------------------------------- approval
def record_approval(ctx: Context, request_ids: list[str], *, approved: bool, by: str | None,
                    at: dt.datetime | None = None) -> int:
    event = "approved" if approved else "rejected"
    return ctx.store.record_request_event(request_ids, event, actor=by or "unknown", at=at,
                                          detail=f"sending to vendors {event} in Airflow (human in the loop)")


# ------------------------------------------------------------------------------------------- finish
def finish(ctx: Context, request_ids: list[str]) -> dict:
    """Complete what is complete, purge the identifiers of complete requests, write every request's evidence."""
    from .evidence import write_evidence_many

    newly = ctx.store.refresh_status(request_ids)
    purged = ctx.store.purge_identifiers_many(request_ids)
    written = write_evidence_many(ctx, request_ids)
    reqs = ctx.store.requests(request_ids)
    statuses = Counter(p.status for p in ctx.store.pairs(request_ids))
    return {"requests": len(reqs), "completed_now": len(newly), "complete": sum(r.status == st.COMPLETE for r in reqs),
            "evidence_written": written, "identifiers_purged": purged, "pairs": dict(sorted(statuses.items())),
            "reports_dir": str(ctx.reports_dir)}


def run_once(ctx: Context, selector: str | None, *, run_id: str, dry_run: bool = False, wait_seconds: float = 0,
             poll_every: float = 1.0) -> dict:
    """Every step in one process, no Airflow (the CLI's `erasure run`, benchmarks and tests)."""
    started = time.perf_counter()
    sel = select_requests(ctx, selector)
    resolved = resolve_and_suppress(ctx, sel["request_ids"], dry_run=dry_run)
    if dry_run:
        return {"selection": {k: v for k, v in sel.items() if k != "request_ids"}, "resolve": resolved,
                "seconds": round(time.perf_counter() - started, 3)}
    plan = plan_batches(ctx, run_id, sel["request_ids"])
    submitted = [submit_vendor(ctx, p["vendor"], p["batches"]) for p in plan]
    deadline = time.monotonic() + wait_seconds
    polls = [poll_vendor(ctx, p["vendor"], p["batches"]) for p in plan]
    while wait_seconds and any(x["open"] for x in polls) and time.monotonic() < deadline:
        time.sleep(poll_every)
        polls = [poll_vendor(ctx, p["vendor"], p["batches"]) for p in plan]
    done = finish(ctx, sel["request_ids"])
    return {"selection": {k: v for k, v in sel.items() if k != "request_ids"}, "resolve": resolved, "plan": plan,
            "submitted": submitted, "polls": polls, "finish": done, "seconds": round(time.perf_counter() - started, 3)}
