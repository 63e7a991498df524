"""Reading the shop database (SQLite file or PostgreSQL) in bounded Arrow batches."""
from __future__ import annotations

import functools
from typing import Iterator

import pyarrow as pa
import sqlalchemy as sa


def as_url(url_or_path: str) -> str:
    """Accept a SQLAlchemy URL or a plain path to a SQLite file."""
    return url_or_path if "://" in url_or_path else f"sqlite:///{url_or_path}"


@functools.lru_cache(maxsize=8)
def engine(url: str) -> sa.Engine:
    return sa.create_engine(as_url(url), future=True)


def _to_batch(names: list[str], rows: list) -> pa.RecordBatch:
    columns = list(zip(*rows)) if rows else [[] for _ in names]
    arrays = []
    for col in columns:
        try:
            arrays.append(pa.array(col))
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed types in SQLite: fall back to text
            arrays.append(pa.array([None if v is None else str(v) for v in col], pa.string()))
    return pa.RecordBatch.from_arrays(arrays, names=names)


def stream(url: str, sql: str, params: dict | None = None, chunk_rows: int = 50_000) -> Iterator[pa.RecordBatch]:
    """Run a query and yield Arrow batches of at most chunk_rows rows (server-side cursor on PostgreSQL)."""
    with engine(url).connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=chunk_rows).execute(sa.text(sql), params or {})
        names = list(result.keys())
        empty = True
        for part in result.partitions(chunk_rows):
            empty = False
            yield _to_batch(names, part)
        if empty:
            yield _to_batch(names, [])


def column(url: str, sql: str, params: dict | None = None) -> pa.Array:
    """The first column of a query as one Arrow array (ids: 8 bytes a row)."""
    with engine(url).connect() as conn:
        return pa.array([r[0] for r in conn.execute(sa.text(sql), params or {})])
