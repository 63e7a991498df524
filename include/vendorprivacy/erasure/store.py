"""The ledger side of erasure: requests, (request, vendor) pairs, batches and the timeline.

The pair state machine (DESIGN.md, "Sent is not confirmed"):

    queued -> sent -> acknowledged -> completed | not_found | retained | failed
                  \\______________________________/  (a vendor may answer finally without acknowledging)

Only a vendor's answer moves a pair past *sent*. Nothing goes backwards: an older answer that arrives
after a newer one is ignored ("stale"), a second copy of the same answer is ignored ("already"), and a
final answer that contradicts another final answer is refused. `not_applicable` (the vendor never received
the subject, or an opt-out does not apply to it) and `failed` with our reason (no identifier the vendor can
match on) are final from the start. Each transition is appended to the timeline exactly once (a unique
constraint on request, scope and event), so re-running a step never double counts.
"""
from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, fields
from typing import Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from vendorprivacy.ledger import Ledger
from vendorprivacy.ledger import tables as t

from . import deadlines

BATCH_NAMESPACE = uuid.UUID("a3d9e1f4-58b2-4c7e-8f10-6b2d4e9c0a71")

QUEUED, SENT, ACKNOWLEDGED = "queued", "sent", "acknowledged"
COMPLETED, NOT_FOUND, RETAINED, FAILED, NOT_APPLICABLE = "completed", "not_found", "retained", "failed", "not_applicable"
PAIR_STATUSES = (QUEUED, SENT, ACKNOWLEDGED, COMPLETED, NOT_FOUND, RETAINED, FAILED, NOT_APPLICABLE)
FINAL = frozenset({COMPLETED, NOT_FOUND, RETAINED, FAILED, NOT_APPLICABLE})
OPEN = frozenset({QUEUED, SENT, ACKNOWLEDGED})
VENDOR_ANSWERS = frozenset({ACKNOWLEDGED, COMPLETED, NOT_FOUND, RETAINED, FAILED})
ALLOWED: dict[str, frozenset[str]] = {
    QUEUED: frozenset({SENT}),
    SENT: VENDOR_ANSWERS,
    ACKNOWLEDGED: VENDOR_ANSWERS - {ACKNOWLEDGED},
}
_RANK = {QUEUED: 0, SENT: 1, ACKNOWLEDGED: 2, **{s: 3 for s in FINAL}}

FILED, IN_PROGRESS, COMPLETE = "filed", "in_progress", "complete"
REQUEST_SCOPE = "request"


class IllegalTransition(ValueError):
    pass


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def _naive(at: dt.datetime | None) -> dt.datetime:
    if at is None:
        return _now()
    return at.astimezone(dt.timezone.utc).replace(tzinfo=None) if at.tzinfo else at


def new_pair_id() -> str:
    """A pair id is a random uuid4: the only reference a vendor sees (OpenDSR subject_request_id). Idempotency
    comes from the unique (request, vendor) constraint, not from the id."""
    return str(uuid.uuid4())


def batch_id_of(run_id: str, vendor: str, request_ids: Iterable[str]) -> str:
    return str(uuid.uuid5(BATCH_NAMESPACE, f"{run_id}/{vendor}/{','.join(sorted(request_ids))}"))


@dataclass(frozen=True)
class RequestView:
    request_id: str
    ticket: str
    regulation: str
    request_type: str
    received_on: dt.date
    source: str
    status: str
    ack_due: dt.date | None
    due: dt.date
    extended_due: dt.date | None
    extension_noticed_on: dt.date | None
    subject_keys: list | None
    identifier_types: list | None
    filed_at: dt.datetime
    resolved_at: dt.datetime | None
    suppressed_at: dt.datetime | None
    completed_at: dt.datetime | None
    purged_at: dt.datetime | None

    @property
    def effective_due(self) -> dt.date:
        return deadlines.effective_due(self.due, self.extended_due, self.extension_noticed_on is not None)


@dataclass(frozen=True)
class PairView:
    pair_id: str
    request_id: str
    vendor: str
    status: str
    reason: str | None
    received_subject: bool | None
    batch_id: str | None
    identifier_types: dict | None
    vendor_reference: str | None
    evidence_sha256: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    ticket: str
    regulation: str
    request_type: str
    due: dt.date              # the request's due date in force (extended once noticed)

    @property
    def final(self) -> bool:
        return self.status in FINAL


@dataclass(frozen=True)
class Event:
    request_id: str
    scope: str
    event: str
    from_status: str | None
    at: dt.datetime
    evidence_sha256: str | None
    actor: str | None
    detail: str | None


_REQ_COLS = [f.name for f in fields(RequestView)]
_PAIR_COLS = [c for c in (f.name for f in fields(PairView)) if c not in ("ticket", "regulation", "request_type", "due")]


class ErasureStore:
    """Erasure records in the ledger database (the same engine, schema and migrations as the Ledger)."""

    def __init__(self, ledger: Ledger):
        self.ledger = ledger
        self.engine = ledger.engine

    # ------------------------------------------------------------------ events
    def add_event(self, conn, request_id: str, scope: str, event: str, *, from_status: str | None = None,
                  at: dt.datetime | None = None, evidence_sha256: str | None = None, actor: str | None = None,
                  detail: str | None = None) -> bool:
        """Append an event once; False when it is already in the timeline."""
        ev = t.erasure_events.c
        exists = conn.execute(sa.select(ev.event_id).where(ev.request_id == request_id, ev.scope == scope,
                                                           ev.event == event)).first()
        if exists:
            return False
        try:
            with conn.begin_nested():
                conn.execute(t.erasure_events.insert().values(
                    request_id=request_id, scope=scope, event=event, from_status=from_status, at=_naive(at),
                    evidence_sha256=evidence_sha256, actor=actor, detail=detail))
        except IntegrityError:  # a concurrent writer recorded it first
            return False
        return True

    @staticmethod
    def events_present(conn, rows: list[dict]) -> set[tuple]:
        """Which (request_id, scope, event) of these rows are already in the timeline."""
        ev = t.erasure_events.c
        ids = sorted({r["request_id"] for r in rows})
        names = sorted({r["event"] for r in rows})
        present: set[tuple] = set()
        for i in range(0, len(ids), 500):
            present |= {tuple(x) for x in conn.execute(sa.select(ev.request_id, ev.scope, ev.event).where(
                ev.request_id.in_(ids[i:i + 500]), ev.event.in_(names)))}
        return present

    def add_events_once(self, conn, rows: list[dict]) -> int:
        """Append many events (rows from _event_row), skipping any already in the timeline; returns how many."""
        if not rows:
            return 0
        present = self.events_present(conn, rows)
        new, seen = [], set()
        for r in rows:
            key = (r["request_id"], r["scope"], r["event"])
            if key not in present and key not in seen:
                seen.add(key)
                new.append(r)
        for i in range(0, len(new), 1000):
            conn.execute(t.erasure_events.insert(), new[i:i + 1000])
        return len(new)

    def record_request_event(self, request_ids: Iterable[str], event: str, **kw) -> int:
        with self.engine.begin() as conn:
            return self.add_events_once(conn, [self._event_row(r, REQUEST_SCOPE, event, **kw) for r in request_ids])

    def timeline(self, request_id: str) -> list[Event]:
        ev = t.erasure_events.c
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.erasure_events).where(ev.request_id == request_id)
                                .order_by(ev.at, ev.event_id)).mappings().all()
        return [Event(**{k: r[k] for k in Event.__dataclass_fields__}) for r in rows]

    # ------------------------------------------------------------------ requests
    def open_duplicates(self, checks: Sequence[tuple[str, str | None, str | None]]) -> dict[int, str]:
        """For (request_type, email_lookup, phone_lookup) triples: index -> ticket of an open request for the
        same subject and type."""
        r = t.erasure_requests.c
        lookups = {x for _, e, p in checks for x in (e, p) if x}
        if not lookups:
            return {}
        found: list = []
        with self.engine.connect() as conn:
            ordered = sorted(lookups)
            for i in range(0, len(ordered), 500):
                part = ordered[i:i + 500]
                found += conn.execute(sa.select(r.request_type, r.email_lookup, r.phone_lookup, r.ticket).where(
                    r.status != COMPLETE, sa.or_(r.email_lookup.in_(part), r.phone_lookup.in_(part)))).all()
        by_key: dict[tuple[str, str], str] = {}
        for rtype, el, pl, ticket in found:
            for x in (el, pl):
                if x:
                    by_key[(rtype, x)] = ticket
        out = {}
        for i, (rtype, e, p) in enumerate(checks):
            hit = by_key.get((rtype, e)) if e else None
            hit = hit or (by_key.get((rtype, p)) if p else None)
            if hit:
                out[i] = hit
        return out

    def taken_tickets(self, pairs: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        wanted = set(pairs)
        if not wanted:
            return set()
        r = t.erasure_requests.c
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(r.ticket, r.request_type).where(
                r.ticket.in_(sorted({p[0] for p in wanted})))).all()
        return {(a, b) for a, b in rows} & wanted

    def insert_requests(self, records: list[dict]) -> None:
        """Insert validated, sealed requests and their 'filed' events in ONE transaction: all or nothing."""
        if not records:
            return
        with self.engine.begin() as conn:
            conn.execute(t.erasure_requests.insert(), records)
            conn.execute(t.erasure_events.insert(), [
                {"request_id": rec["request_id"], "scope": REQUEST_SCOPE, "event": "filed", "from_status": None,
                 "at": rec["filed_at"], "evidence_sha256": None, "actor": rec["source"],
                 "detail": f"{rec['regulation']} {rec['request_type']} received {rec['received_on']}"}
                for rec in records])

    def _request_rows(self, where) -> list[RequestView]:
        r = t.erasure_requests
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(*[r.c[c] for c in _REQ_COLS]).where(where)
                                .order_by(r.c.received_on, r.c.ticket)).mappings().all()
        return [RequestView(**dict(row)) for row in rows]

    def request(self, request_id: str) -> RequestView | None:
        rows = self._request_rows(t.erasure_requests.c.request_id == request_id)
        return rows[0] if rows else None

    def requests(self, request_ids: Iterable[str] | None = None, *, tickets: Iterable[str] | None = None,
                 statuses: Iterable[str] | None = None) -> list[RequestView]:
        c = t.erasure_requests.c
        conds = []
        if request_ids is not None:
            ids = sorted(set(request_ids))
            if not ids:
                return []
            out: list[RequestView] = []
            for i in range(0, len(ids), 500):
                out += self._request_rows(sa.and_(c.request_id.in_(ids[i:i + 500]),
                                                  *( [c.status.in_(list(statuses))] if statuses else [])))
            return sorted(out, key=lambda v: (v.received_on, v.ticket))
        if tickets is not None:
            conds.append(c.ticket.in_(sorted(set(tickets))))
        if statuses is not None:
            conds.append(c.status.in_(list(statuses)))
        return self._request_rows(sa.and_(sa.true(), *conds))

    def pending(self) -> list[RequestView]:
        return self.requests(statuses=[FILED, IN_PROGRESS])

    def sealed(self, request_id: str) -> tuple[str | None, str | None, str | None]:
        c = t.erasure_requests.c
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(c.identity_ct, c.resolved_ct, c.key_id).where(c.request_id == request_id)).first()
        return (row[0], row[1], row[2]) if row else (None, None, None)

    def sealed_many(self, request_ids: Iterable[str]) -> dict[str, tuple[str | None, str | None, str | None]]:
        c = t.erasure_requests.c
        ids = sorted(set(request_ids))
        out = {}
        with self.engine.connect() as conn:
            for i in range(0, len(ids), 500):
                for rid, a, b, k in conn.execute(sa.select(c.request_id, c.identity_ct, c.resolved_ct, c.key_id)
                                                 .where(c.request_id.in_(ids[i:i + 500]))):
                    out[rid] = (a, b, k)
        return out

    def record_resolutions(self, conn, resolutions: list[dict], *, at: dt.datetime) -> list[str]:
        """Inside the caller's transaction (which also holds the suppression): each request's resolution, its
        pairs and their events, in a few bulk statements. Each item: request_id, resolved_ct, subject_keys,
        pairs [{vendor, status, reason, received_subject, identifier_types}], suppression (text or None),
        detail. Only requests still 'filed' are recorded (a concurrent or earlier run's resolution wins);
        returns the ids recorded."""
        c = t.erasure_requests.c
        done: list[str] = []
        pair_rows: list[dict] = []
        events: list[dict] = []
        for item in resolutions:
            rid = item["request_id"]
            res = conn.execute(t.erasure_requests.update().where(c.request_id == rid, c.status == FILED).values(
                resolved_ct=item["resolved_ct"], subject_keys=item["subject_keys"], status=IN_PROGRESS, resolved_at=at,
                suppressed_at=at if item["suppression"] else None))
            if res.rowcount != 1:
                continue
            done.append(rid)
            events.append(self._event_row(rid, REQUEST_SCOPE, "resolved", at=at, actor="system", detail=item["detail"]))
            if item["suppression"]:
                events.append(self._event_row(rid, REQUEST_SCOPE, "suppressed", at=at, actor="system",
                                              detail=item["suppression"]))
            for p in item["pairs"]:
                pair_rows.append({"pair_id": new_pair_id(), "request_id": rid, "vendor": p["vendor"], "status": p["status"],
                                  "reason": None if p["status"] == QUEUED else p.get("reason"),
                                  "received_subject": p["received_subject"], "batch_id": None,
                                  "identifier_types": p.get("identifier_types"), "vendor_reference": None,
                                  "evidence_sha256": None, "created_at": at, "updated_at": at})
                events.append(self._event_row(rid, p["vendor"], p["status"], at=at, actor="system", detail=p.get("reason")))
        for i in range(0, len(pair_rows), 1000):
            conn.execute(t.erasure_pairs.insert(), pair_rows[i:i + 1000])
        for i in range(0, len(events), 1000):
            conn.execute(t.erasure_events.insert(), events[i:i + 1000])
        return done

    @staticmethod
    def _event_row(request_id: str, scope: str, event: str, *, from_status: str | None = None,
                   at: dt.datetime | None = None, evidence_sha256: str | None = None, actor: str | None = None,
                   detail: str | None = None) -> dict:
        return {"request_id": request_id, "scope": scope, "event": event, "from_status": from_status, "at": _naive(at),
                "evidence_sha256": evidence_sha256, "actor": actor, "detail": detail}

    def extend(self, request_id: str, noticed_on: dt.date, *, actor: str | None = None) -> RequestView:
        """Use the one extension the law allows (notice given to the subject on `noticed_on`)."""
        req = self.request(request_id)
        if req is None:
            raise KeyError(f"no request {request_id}")
        if req.extended_due is None:
            raise ValueError(f"a {req.regulation} {req.request_type} request cannot be extended")
        if req.extension_noticed_on is not None:
            raise ValueError(f"request {req.ticket} was already extended on {req.extension_noticed_on}")
        if noticed_on > req.due:
            raise ValueError(f"the extension must be noticed before the original due date {req.due}")
        with self.engine.begin() as conn:
            conn.execute(t.erasure_requests.update().where(t.erasure_requests.c.request_id == request_id)
                         .values(extension_noticed_on=noticed_on))
            self.add_event(conn, request_id, REQUEST_SCOPE, "extended", actor=actor,
                           detail=f"due date extended from {req.due} to {req.extended_due}; notice given {noticed_on}")
        return self.request(request_id)  # type: ignore[return-value]

    # ------------------------------------------------------------------ pairs
    def pairs(self, request_ids: Iterable[str] | None = None, *, vendor: str | None = None,
              batch_ids: Iterable[str] | None = None, statuses: Iterable[str] | None = None) -> list[PairView]:
        p, r = t.erasure_pairs, t.erasure_requests
        q = (sa.select(*[p.c[c] for c in _PAIR_COLS], r.c.ticket, r.c.regulation, r.c.request_type, r.c.due,
                       r.c.extended_due, r.c.extension_noticed_on)
             .join(r, r.c.request_id == p.c.request_id))
        if vendor is not None:
            q = q.where(p.c.vendor == vendor)
        if statuses is not None:
            q = q.where(p.c.status.in_(list(statuses)))
        if batch_ids is not None:
            q = q.where(p.c.batch_id.in_(sorted(set(batch_ids))))
        rows = []
        with self.engine.connect() as conn:
            if request_ids is None:
                rows = conn.execute(q).mappings().all()
            else:
                ids = sorted(set(request_ids))
                for i in range(0, len(ids), 500):
                    rows += conn.execute(q.where(p.c.request_id.in_(ids[i:i + 500]))).mappings().all()
        out = []
        for row in rows:
            d = dict(row)
            ext, noticed = d.pop("extended_due"), d.pop("extension_noticed_on")
            d["due"] = deadlines.effective_due(d["due"], ext, noticed is not None)
            out.append(PairView(**d))
        return sorted(out, key=lambda v: (v.ticket, v.request_type, v.vendor))

    def pair(self, pair_id: str) -> PairView | None:
        p = t.erasure_pairs.c
        with self.engine.connect() as conn:
            rid = conn.execute(sa.select(p.request_id).where(p.pair_id == pair_id)).scalar()
        if rid is None:
            return None
        return next((x for x in self.pairs([rid]) if x.pair_id == pair_id), None)

    def transition(self, pair_id: str, to: str, *, at: dt.datetime | None = None, evidence_sha256: str | None = None,
                   reason: str | None = None, vendor_reference: str | None = None, actor: str | None = None,
                   batch_id: str | None = None, conn=None) -> str:
        """Move a pair to `to`. Returns 'applied', 'already' (same status: a repeat) or 'stale' (an older answer
        after a newer one). Raises IllegalTransition for anything else (backwards, skipping sent, contradicting
        a final answer, retained without a reason)."""
        if conn is None:
            with self.engine.begin() as c:
                return self.transition(pair_id, to, at=at, evidence_sha256=evidence_sha256, reason=reason,
                                       vendor_reference=vendor_reference, actor=actor, batch_id=batch_id, conn=c)
        p = t.erasure_pairs.c
        q = sa.select(p.status, p.request_id, p.vendor, p.batch_id).where(p.pair_id == pair_id)
        if conn.dialect.name == "postgresql":
            q = q.with_for_update()
        row = conn.execute(q).first()
        if row is None:
            raise IllegalTransition(f"no pair {pair_id}")
        cur, request_id, vendor, cur_batch = row
        verdict = self._judge(cur, to, reason, batch_id, cur_batch)
        if verdict in ("already", "stale"):
            return verdict
        if verdict != "ok":
            raise IllegalTransition(f"pair {pair_id} ({vendor}): {verdict}")
        when = _naive(at)
        values: dict = {"status": to, "updated_at": _now()}
        if reason is not None:
            values["reason"] = reason[:2000]
        if vendor_reference:
            values["vendor_reference"] = vendor_reference[:200]
        if evidence_sha256:
            values["evidence_sha256"] = evidence_sha256
        done = conn.execute(t.erasure_pairs.update().where(p.pair_id == pair_id, p.status == cur).values(**values))
        if done.rowcount != 1:  # someone else moved it between our read and write: let them win
            return "already"
        self.add_event(conn, request_id, vendor, to, from_status=cur, at=when, evidence_sha256=evidence_sha256,
                       actor=actor or vendor, detail=reason)
        return "applied"

    def transition_many(self, changes: list[dict], *, batch_id: str | None = None) -> dict:
        """Apply many answers in ONE transaction (the hot path of submissions and polls). Each change: pair_id, to,
        and optionally at, evidence_sha256, reason, vendor_reference, actor. Same rules as `transition`; an
        illegal change is not applied and is reported in 'refused' (pair id and why), never raised."""
        counts = {"applied": 0, "already": 0, "stale": 0, "refused": []}
        if not changes:
            return counts
        p = t.erasure_pairs.c
        ids = sorted({ch["pair_id"] for ch in changes})
        with self.engine.begin() as conn:
            current: dict[str, list] = {}
            for i in range(0, len(ids), 500):
                q = sa.select(p.pair_id, p.status, p.request_id, p.vendor, p.batch_id).where(p.pair_id.in_(ids[i:i + 500]))
                if conn.dialect.name == "postgresql":
                    q = q.with_for_update()
                for pid, status, rid, vendor, b in conn.execute(q):
                    current[pid] = [status, rid, vendor, b]
            start_status = {pid: v[0] for pid, v in current.items()}
            final_values: dict[str, dict] = {}
            events: list[dict] = []
            for ch in changes:
                pid, to = ch["pair_id"], ch["to"]
                if pid not in current:
                    counts["refused"].append((pid, "no such pair"))
                    continue
                cur, rid, vendor, cur_batch = current[pid]
                verdict = self._judge(cur, to, ch.get("reason"), batch_id, cur_batch)
                if verdict in ("already", "stale"):
                    counts[verdict] += 1
                    continue
                if verdict != "ok":
                    counts["refused"].append((pid, f"{vendor}: {verdict}"))
                    continue
                current[pid][0] = to
                vals = final_values.setdefault(pid, {})
                vals["status"] = to
                for key in ("reason", "vendor_reference", "evidence_sha256"):
                    if ch.get(key):
                        vals[key] = ch[key][:{"reason": 2000, "vendor_reference": 200}.get(key, 64)]
                events.append(self._event_row(rid, vendor, to, from_status=cur, at=ch.get("at"),
                                              evidence_sha256=ch.get("evidence_sha256"),
                                              actor=ch.get("actor") or vendor, detail=ch.get("reason")))
                counts["applied"] += 1
            now = _now()
            rows = [{"_pid": pid, "_from": start_status[pid], "_to": vals["status"], "_reason": vals.get("reason"),
                     "_ref": vals.get("vendor_reference"), "_ev": vals.get("evidence_sha256"), "_now": now}
                    for pid, vals in final_values.items()]
            stmt = (t.erasure_pairs.update()
                    .where(p.pair_id == sa.bindparam("_pid"), p.status == sa.bindparam("_from"))
                    .values(status=sa.bindparam("_to"), updated_at=sa.bindparam("_now"),
                            reason=sa.func.coalesce(sa.bindparam("_reason", type_=sa.Text), p.reason),
                            vendor_reference=sa.func.coalesce(sa.bindparam("_ref", type_=sa.String), p.vendor_reference),
                            evidence_sha256=sa.func.coalesce(sa.bindparam("_ev", type_=sa.String), p.evidence_sha256)))
            for i in range(0, len(rows), 1000):   # rows are locked (PostgreSQL FOR UPDATE; SQLite: one writer)
                conn.execute(stmt, rows[i:i + 1000])
            for i in range(0, len(events), 1000):
                conn.execute(t.erasure_events.insert(), events[i:i + 1000])
        return counts

    @staticmethod
    def _judge(cur: str, to: str, reason: str | None, batch_id: str | None, cur_batch: str | None) -> str:
        """'ok', 'already', 'stale', or why the change is illegal (the rules of `transition`)."""
        if to not in PAIR_STATUSES:
            return f"unknown pair status '{to}'"
        if to == RETAINED and not (reason and reason.strip()):
            return "a vendor that retains data must state its legal reason"
        if batch_id is not None and cur_batch is not None and cur_batch != batch_id:
            return f"the pair belongs to batch {cur_batch}, not {batch_id}"
        if cur == to:
            return "already"
        if cur == NOT_APPLICABLE:
            return "not applicable: nothing is sent to it or expected"
        if to not in ALLOWED.get(cur, frozenset()):
            if _RANK[to] < _RANK[cur] and to not in FINAL:
                return "stale"
            return f"{cur} -> {to} is not allowed" + (" (only an answer to a sent pair moves it on)" if cur == QUEUED else "")
        return "ok"

    # ------------------------------------------------------------------ batches
    def assign_batch(self, vendor: str, run_id: str, request_ids: list[str]) -> tuple[str | None, int]:
        """Put the vendor's queued, unbatched pairs of these requests into one batch (id fixed before anything is
        sent, so a crashed run resubmits under the same id). Returns (batch_id, pairs) or (None, 0)."""
        p = t.erasure_pairs.c
        with self.engine.begin() as conn:
            rows = []
            ids = sorted(set(request_ids))
            for i in range(0, len(ids), 500):
                rows += conn.execute(sa.select(p.pair_id, p.request_id).where(
                    p.vendor == vendor, p.status == QUEUED, p.batch_id.is_(None),
                    p.request_id.in_(ids[i:i + 500]))).all()
            if not rows:
                return None, 0
            batch_id = batch_id_of(run_id, vendor, [r[1] for r in rows])
            if conn.execute(sa.select(t.erasure_batches.c.batch_id).where(
                    t.erasure_batches.c.batch_id == batch_id)).first() is None:
                conn.execute(t.erasure_batches.insert().values(
                    batch_id=batch_id, vendor=vendor, run_id=run_id[:250], pair_count=len(rows), status="planned",
                    created_at=_now()))
            else:
                conn.execute(t.erasure_batches.update().where(t.erasure_batches.c.batch_id == batch_id)
                             .values(pair_count=t.erasure_batches.c.pair_count + len(rows)))
            pair_ids = [r[0] for r in rows]
            for i in range(0, len(pair_ids), 500):
                conn.execute(t.erasure_pairs.update().where(p.pair_id.in_(pair_ids[i:i + 500]))
                             .values(batch_id=batch_id))
        return batch_id, len(rows)

    def batch(self, batch_id: str) -> dict | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.erasure_batches).where(t.erasure_batches.c.batch_id == batch_id)).mappings().first()
        return dict(row) if row else None

    def batches(self, batch_ids: Iterable[str]) -> dict[str, dict]:
        ids = sorted(set(batch_ids))
        if not ids:
            return {}
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.erasure_batches).where(t.erasure_batches.c.batch_id.in_(ids))).mappings().all()
        return {r["batch_id"]: dict(r) for r in rows}

    def vendor_batches(self, vendor: str, *, with_status: Iterable[str]) -> dict[str, list[str]]:
        """{batch_id: [pair_id...]} of this vendor's batches having pairs in the given statuses."""
        p = t.erasure_pairs.c
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(p.batch_id, p.pair_id).where(
                p.vendor == vendor, p.batch_id.is_not(None), p.status.in_(list(with_status)))).all()
        out: dict[str, list[str]] = {}
        for b, pid in rows:
            out.setdefault(b, []).append(pid)
        return out

    def record_submission(self, batch_id: str, *, sha256: str, size: int, vendor_reference: str | None,
                          at: dt.datetime | None = None) -> dict:
        """The vendor has the batch: the batch is 'submitted' and its queued pairs are 'sent' (one transaction)."""
        when = _naive(at)
        b = t.erasure_batches.c
        with self.engine.begin() as conn:
            conn.execute(t.erasure_batches.update().where(b.batch_id == batch_id, b.status == "planned").values(
                status="submitted", submitted_at=when, sha256=sha256, bytes=size, vendor_reference=vendor_reference))
            pair_ids = [r[0] for r in conn.execute(sa.select(t.erasure_pairs.c.pair_id).where(
                t.erasure_pairs.c.batch_id == batch_id))]
        counts = self.transition_many([{"pair_id": pid, "to": SENT, "at": when, "evidence_sha256": sha256,
                                        "vendor_reference": vendor_reference, "actor": "system"} for pid in pair_ids],
                                      batch_id=batch_id)
        counts.pop("refused")
        return counts

    # ------------------------------------------------------------------ completion, retention
    def refresh_status(self, request_ids: Iterable[str]) -> list[str]:
        """Mark requests complete whose pairs are all final; returns the newly completed request ids."""
        done = []
        by_req: dict[str, list[PairView]] = {}
        for pv in self.pairs(request_ids):
            by_req.setdefault(pv.request_id, []).append(pv)
        c = t.erasure_requests.c
        ready = {rid: len(ps) for rid, ps in by_req.items() if ps and all(x.final for x in ps)}
        with self.engine.begin() as conn:
            ids = sorted(ready)
            for i in range(0, len(ids), 500):
                part = [r[0] for r in conn.execute(sa.select(c.request_id).where(
                    c.request_id.in_(ids[i:i + 500]), c.status == IN_PROGRESS))]
                if not part:
                    continue
                now = _now()
                conn.execute(t.erasure_requests.update().where(c.request_id.in_(part), c.status == IN_PROGRESS)
                             .values(status=COMPLETE, completed_at=now))
                self.add_events_once(conn, [self._event_row(rid, REQUEST_SCOPE, "complete", at=now, actor="system",
                                                            detail=f"all {ready[rid]} vendor pair(s) final") for rid in part])
                done += part
        return done

    def purge_identifiers(self, request_id: str) -> bool:
        """Forget the subject's identifiers once the request is complete (the record itself stays)."""
        c = t.erasure_requests.c
        with self.engine.begin() as conn:
            res = conn.execute(t.erasure_requests.update().where(
                c.request_id == request_id, c.status == COMPLETE, c.purged_at.is_(None)).values(
                identity_ct=None, resolved_ct=None, email_lookup=None, phone_lookup=None, purged_at=_now()))
            if res.rowcount:
                self.add_event(conn, request_id, REQUEST_SCOPE, "identifiers_purged", actor="system",
                               detail="the subject's encrypted identifiers were deleted from the ledger")
            return bool(res.rowcount)

    def purge_identifiers_many(self, request_ids: Iterable[str]) -> int:
        """purge_identifiers for many complete requests in one transaction; returns how many were purged."""
        c = t.erasure_requests.c
        ids = sorted(set(request_ids))
        n = 0
        with self.engine.begin() as conn:
            for i in range(0, len(ids), 500):
                part = [r[0] for r in conn.execute(sa.select(c.request_id).where(
                    c.request_id.in_(ids[i:i + 500]), c.status == COMPLETE, c.purged_at.is_(None)))]
                if not part:
                    continue
                now = _now()
                conn.execute(t.erasure_requests.update().where(c.request_id.in_(part), c.purged_at.is_(None)).values(
                    identity_ct=None, resolved_ct=None, email_lookup=None, phone_lookup=None, purged_at=now))
                conn.execute(t.erasure_events.insert(), [self._event_row(
                    rid, REQUEST_SCOPE, "identifiers_purged", at=now, actor="system",
                    detail="the subject's encrypted identifiers were deleted from the ledger") for rid in part])
                n += len(part)
        return n

    def timelines(self, request_ids: Iterable[str]) -> dict[str, list[Event]]:
        ev = t.erasure_events.c
        ids = sorted(set(request_ids))
        out: dict[str, list[Event]] = {i: [] for i in ids}
        with self.engine.connect() as conn:
            for i in range(0, len(ids), 500):
                for r in conn.execute(sa.select(t.erasure_events).where(ev.request_id.in_(ids[i:i + 500]))
                                      .order_by(ev.at, ev.event_id)).mappings():
                    out[r["request_id"]].append(Event(**{k: r[k] for k in Event.__dataclass_fields__}))
        return out

    def purge_expired(self, now: dt.datetime | None = None, months: int = 24) -> int:
        """Delete request records (request, pairs, timeline) completed more than `months` ago (CCPA §7101 keeps
        them 24 months). Suppression and opt-out entries stay: later feeds must keep excluding the subject."""
        cutoff_day = deadlines.add_months(_naive(now).date(), -months)
        cutoff = dt.datetime.combine(cutoff_day, dt.time())
        c = t.erasure_requests.c
        with self.engine.begin() as conn:
            ids = [r[0] for r in conn.execute(sa.select(c.request_id).where(c.status == COMPLETE, c.completed_at < cutoff))]
            for i in range(0, len(ids), 500):
                part = ids[i:i + 500]
                conn.execute(t.erasure_events.delete().where(t.erasure_events.c.request_id.in_(part)))
                conn.execute(t.erasure_pairs.delete().where(t.erasure_pairs.c.request_id.in_(part)))
                conn.execute(t.erasure_requests.delete().where(c.request_id.in_(part)))
            # batches no pair refers to any more
            conn.execute(t.erasure_batches.delete().where(~sa.exists().where(
                t.erasure_pairs.c.batch_id == t.erasure_batches.c.batch_id)))
        return len(ids)
