"""Apply a feed's declared fields to a batch of extracted rows: exactly those columns, each transformed."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from ..policy.models import FeedSpec, FieldSpec
from . import normalise as n
from .text import neutralise_array


def _as_text(arr: pa.Array) -> pa.Array:
    if pa.types.is_boolean(arr.type):
        return pc.if_else(arr, "true", "false")
    if pa.types.is_timestamp(arr.type):
        return pc.strftime(arr, format="%Y-%m-%dT%H:%M:%S")
    return arr if pa.types.is_string(arr.type) else pc.cast(arr, pa.string())


def apply_field(field: FieldSpec, batch: pa.RecordBatch, hmac_key: bytes | None) -> pa.Array:
    col = batch.column(field.source_column)
    regions = batch.column(field.country_source) if field.country_source else None
    t = field.transform
    if t == "keep":
        return _as_text(col)
    if t == "email":
        return n.normalise_array("email", col)
    if t == "e164":
        e164 = n.normalise_array("phone_e164", col, regions)
        return e164 if field.plus else pc.utf8_ltrim(e164, characters="+")
    if t == "truncate":
        return pc.utf8_slice_codeunits(pc.utf8_trim_whitespace(_as_text(col)), 0, field.length)
    if t == "text":  # scrubbed first, then cut: a cut never exposes part of an address
        return pc.utf8_slice_codeunits(neutralise_array(_as_text(col)), 0, field.length)
    normalised = n.normalise_array(field.normaliser, col, regions)
    if t == "sha256":
        return n.sha256_array(normalised)
    if t == "hmac":
        if not hmac_key:
            raise ValueError(f"field '{field.name}' needs the vendor's token key, which is missing")
        return n.hmac_array(hmac_key, normalised)
    raise ValueError(f"field '{field.name}': unknown transform '{t}'")


def output_schema(feed: FeedSpec) -> pa.Schema:
    return pa.schema([(f.name, pa.string()) for f in feed.sent_fields])


def minimise_batch(feed: FeedSpec, batch: pa.RecordBatch, hmac_key: bytes | None) -> pa.RecordBatch:
    """Only the declared, non-dropped fields leave this function; everything else in the extract stays behind."""
    missing = [c for f in feed.fields for c in (f.source_column, f.country_source) if c and c not in batch.schema.names]
    if missing:
        raise ValueError(f"feed '{feed.id}': the query returns no column {', '.join(sorted(set(missing)))}")
    arrays = [apply_field(f, batch, hmac_key) for f in feed.sent_fields]
    return pa.RecordBatch.from_arrays(arrays, schema=output_schema(feed))
