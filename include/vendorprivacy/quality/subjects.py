"""The gate's own answer to "may this person be in this feed?", asked of the shop database directly.

Deliberately independent of ``vendorprivacy.minimise.eligibility``: a second implementation of the same
rules, written from the register's rule names, so one bug cannot both select and approve a row.

Fail closed: a customer missing from ``customers``, a missing ``consents`` row, a null birth date or a null
flag makes every rule that needs it false. Under-13s are never eligible, whatever the feed declares
(the notice: never shared under 13).
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import date
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import pyarrow as pa
    import sqlalchemy as sa

__all__ = ["age_cutoff", "EligibilityChecker", "SubjectReader", "KNOWN_RULES"]

KNOWN_RULES = frozenset({"min_age_13", "min_age_16", "no_sale_share_opt_out", "no_gpc",
                         "eea_ad_consent", "marketing_opt_in"})
_IN_BATCH = 5000


def age_cutoff(run_date: date, years: int) -> date:
    """Latest birth date of someone who is at least ``years`` old on ``run_date``.

    Born 29 February: the birthday counts on 1 March in common years (cutoff 28 February excludes them).
    """
    try:
        return run_date.replace(year=run_date.year - years)
    except ValueError:  # run_date is 29 February, the target year is common
        return run_date.replace(year=run_date.year - years, day=28)


class EligibilityChecker:
    """Evaluates a feed's eligibility rules for batches of customer ids against the shop database."""

    def __init__(self, shop_url: str, rules: Iterable[str], run_date: date, *, schema: str | None = None):
        import sqlalchemy as sa

        self.rules = set(rules) | {"min_age_13"}
        unknown = self.rules - KNOWN_RULES
        if unknown:  # fail closed on a rule this gate cannot evaluate
            raise ValueError(f"unknown eligibility rules: {', '.join(sorted(unknown))}")
        self.engine = sa.create_engine(shop_url)
        self.dialect = self.engine.dialect.name
        self._stmt = self._statement(sa, run_date, schema)

    def _statement(self, sa, run_date: date, schema: str | None):
        c = sa.table("customers", sa.column("customer_id", sa.BigInteger), sa.column("birth_date", sa.Date),
                     sa.column("is_eea", sa.Boolean), schema=schema)
        k = sa.table("consents", sa.column("customer_id", sa.BigInteger),
                     sa.column("marketing_opt_in", sa.Boolean), sa.column("sale_share_opt_out", sa.Boolean),
                     sa.column("gpc_signal", sa.Boolean), sa.column("eea_ad_consent", sa.Boolean), schema=schema)
        T, F = sa.true(), sa.false()
        conds = []
        for years in (13, 16):
            if f"min_age_{years}" in self.rules:
                conds.append(c.c.birth_date.is_not(None))
                conds.append(c.c.birth_date <= sa.literal(age_cutoff(run_date, years), sa.Date))
        if "no_sale_share_opt_out" in self.rules:
            conds.append(k.c.sale_share_opt_out == F)
        if "no_gpc" in self.rules:
            conds.append(k.c.gpc_signal == F)
        if "marketing_opt_in" in self.rules:
            conds.append(k.c.marketing_opt_in == T)
        if "eea_ad_consent" in self.rules:
            conds.append(sa.or_(c.c.is_eea == F, sa.and_(c.c.is_eea == T, k.c.eea_ad_consent == T)))
        base = (sa.select(c.c.customer_id)
                .select_from(c.outerjoin(k, k.c.customer_id == c.c.customer_id))
                .where(*conds))
        if self.dialect == "sqlite":
            # One JSON parameter instead of 100k bound variables (SQLite caps those).
            ids = sa.select(sa.column("value", sa.BigInteger)).select_from(
                sa.func.json_each(sa.bindparam("ids_json", type_=sa.String)))
            return base.where(c.c.customer_id.in_(ids.scalar_subquery()))
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import ARRAY
            return base.where(c.c.customer_id == sa.any_(sa.bindparam("ids", type_=ARRAY(sa.BigInteger))))
        return base.where(c.c.customer_id.in_(sa.bindparam("ids", expanding=True)))

    def eligible(self, customer_ids: "np.ndarray") -> "np.ndarray":
        """Boolean mask aligned with ``customer_ids`` (int64, may hold duplicates)."""
        import numpy as np

        ids = np.unique(customer_ids)
        found: list[int] = []
        with self.engine.connect() as conn:
            if self.dialect == "sqlite":
                found = list(conn.execute(self._stmt, {"ids_json": json.dumps(ids.tolist())}).scalars())
            elif self.dialect == "postgresql":
                for i in range(0, len(ids), 50_000):
                    found += conn.execute(self._stmt, {"ids": ids[i:i + 50_000].tolist()}).scalars()
            else:
                for i in range(0, len(ids), _IN_BATCH):
                    found += conn.execute(self._stmt, {"ids": ids[i:i + _IN_BATCH].tolist()}).scalars()
        return np.isin(customer_ids, np.asarray(found, dtype=np.int64))

    def close(self) -> None:
        self.engine.dispose()


class SubjectReader:
    """Reads subjects.arrow (Arrow IPC file) sequentially in row slices that line up with data.csv chunks.

    Memory-maps the file and walks its record batches, so only the current slice is materialised.
    """

    def __init__(self, path) -> None:
        import pyarrow as pa

        self._source = pa.memory_map(str(path), "r")
        self._reader = pa.ipc.open_file(self._source)
        schema = self._reader.schema
        for name, ok in (("customer_id", pa.types.is_integer), ("subject_key", _is_string)):
            if name not in schema.names or not ok(schema.field(name).type):
                raise ValueError(f"subjects file lacks an integer customer_id and a string subject_key column")
        self.num_rows = sum(self._reader.get_batch(i).num_rows for i in range(self._reader.num_record_batches))
        self._batches: Iterator["pa.RecordBatch"] = (self._reader.get_batch(i)
                                                     for i in range(self._reader.num_record_batches))
        self._pending: "pa.RecordBatch | None" = None

    def take(self, n: int) -> "pa.Table":
        """Next ``n`` rows (fewer when the file runs out) with columns customer_id (int64), subject_key."""
        import pyarrow as pa

        parts, need = [], n
        while need > 0:
            if self._pending is None or self._pending.num_rows == 0:
                self._pending = next(self._batches, None)
                if self._pending is None:
                    break
                self._pending = self._pending.select(["customer_id", "subject_key"])
            part = self._pending.slice(0, need)
            self._pending = self._pending.slice(part.num_rows)
            parts.append(part)
            need -= part.num_rows
        schema = pa.schema([("customer_id", pa.int64()), ("subject_key", pa.string())])
        if not parts:
            return schema.empty_table()
        table = pa.Table.from_batches(parts)
        return pa.table({"customer_id": table["customer_id"].cast(pa.int64()),
                         "subject_key": table["subject_key"].cast(pa.string())})

    def close(self) -> None:
        self._source.close()


def _is_string(t) -> bool:
    import pyarrow as pa

    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)
