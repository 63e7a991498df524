"""The data-quality gate: a staged delivery is validated with GX Core before anything leaves.

Fail closed: any failed expectation, any exception inside GX or in the gate itself, an expectation that
did not report, all make ``passed`` false. PII-free: GX runs with ``BASIC`` results and
``partial_unexpected_count: 0`` (counts, no values), and only counts, names and exception class names are
copied out of its results. GX's own log records are withheld while the gate runs (they can quote data,
e.g. "Caught exception <message>"); warnings and errors are re-logged as a data-free line.

GX is imported lazily, inside ``run_gate`` / ``build_suite``: ``import great_expectations`` costs ~5 s
and must not be paid when Airflow parses DAG files.
"""
from __future__ import annotations

import logging
import os
import re
import time
import warnings
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .checks import (DELIVERY_ROWS, SUBJECT_KEY, SUBJECT_OK, SUBJECT_ROWS, SUBJECT_SUPPRESSED, Check,
                     feed_checks, row_window, summary_checks)
from .result import FailedExpectation, GateResult

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from vendorprivacy.policy.models import FeedSpec

__all__ = ["run_gate", "build_suite", "build_summary_suite", "gx_context", "RESULT_FORMAT"]

log = logging.getLogger(__name__)

# Counts without values: BASIC computes unexpected_count/element_count; a partial list of length 0 means
# the unexpected values are sliced away inside the metric, before any result object holds them.
RESULT_FORMAT: dict[str, Any] = {"result_format": "BASIC", "partial_unexpected_count": 0,
                                 "include_unexpected_rows": False, "return_unexpected_index_query": False}
_GX_LOGGER = "great_expectations"
_EXC_NAME = re.compile(r"^([A-Za-z_][A-Za-z0-9_.]*)(?::|$)")


# ------------------------------------------------------------------ GX plumbing
def _import_gx():
    os.environ["GX_ANALYTICS_ENABLED"] = "False"  # read at import and context creation
    import great_expectations as gx

    return gx


class _WithholdingHandler(logging.Handler):
    """Receives every great_expectations.* record while the gate runs; re-logs WARNING+ without text."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            log.log(record.levelno, "great_expectations logged a %s in %s (text withheld: it may quote data)",
                    record.levelname, record.name)


@contextmanager
def _gx_withheld():
    gx_log = logging.getLogger(_GX_LOGGER)
    handler = _WithholdingHandler()
    old_propagate = gx_log.propagate
    gx_log.addHandler(handler)
    gx_log.propagate = False
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"great_expectations(\.|$)")
            yield
    finally:
        gx_log.removeHandler(handler)
        gx_log.propagate = old_propagate


@contextmanager
def _no_batch_fingerprint():
    """GX hashes every dataframe batch it loads (``pandas_data_fingerprint``, batch metadata only:
    ~0.3 s per 100k-row chunk here, a third of the gate). Its module constant ``HASH_THRESHOLD`` skips
    that for frames above the threshold; set it to 0 while the gate runs, then restore it."""
    from great_expectations.execution_engine import pandas_execution_engine as engine

    old = engine.HASH_THRESHOLD
    engine.HASH_THRESHOLD = 0
    try:
        yield
    finally:
        engine.HASH_THRESHOLD = old


def gx_context():
    """An ephemeral GX context: in-memory stores, no analytics, no progress bars, no data docs."""
    gx = _import_gx()
    from great_expectations.data_context.types.base import (DataContextConfig, InMemoryStoreBackendDefaults,
                                                            ProgressBarsConfig)

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        data_docs_sites={},
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def _suite_from(name: str, checks: list[Check]):
    gx = _import_gx()
    import great_expectations.expectations as gxe

    expectations = []
    for i, c in enumerate(checks):
        kwargs = dict(c.kwargs)
        if c.column is not None:
            kwargs["column"] = c.column
        expectations.append(getattr(gxe, c.expectation)(**kwargs, meta={"gate_check": c.check,
                                                                        "gate_index": i}))
    # Given to the constructor, the expectations need no data context (add_expectation() wants one).
    return gx.ExpectationSuite(name=name, expectations=expectations)


def build_suite(feed: "FeedSpec"):
    """The per-chunk ExpectationSuite for ``feed``: data.csv's columns plus the gate's subject columns."""
    with _gx_withheld():
        return _suite_from(f"gate_{feed.id}", feed_checks(feed))


def build_summary_suite(feed: "FeedSpec", previous_row_count: int | None):
    """The suite for the one-row summary frame (row totals span chunks)."""
    with _gx_withheld():
        return _suite_from(f"gate_{feed.id}_summary", summary_checks(feed, previous_row_count))


# ------------------------------------------------------------------ tallying results, PII-free
@dataclass
class _Tally:
    check: Check
    unexpected: int = 0
    elements: int = 0
    counted: bool = False
    failed: bool = False
    error: str | None = None
    seen: int = 0

    def failure(self) -> FailedExpectation:
        return FailedExpectation(
            expectation_type=self.check.expectation_type,
            column=self.check.column if self.check.column is not None else self.check.kwargs.get("column_A"),
            check=self.check.check,
            unexpected_count=self.unexpected if self.counted else None,
            element_count=self.elements if self.counted else None,
            error=self.error,
        )


def _exception_name(info: Any) -> str | None:
    """Class name of an exception GX caught, read from the last traceback line; never its message."""
    if not isinstance(info, dict):
        return None
    if "raised_exception" not in info:  # keyed by metric id
        for sub in info.values():
            name = _exception_name(sub)
            if name:
                return name
        return None
    if not info.get("raised_exception"):
        return None
    lines = [ln for ln in str(info.get("exception_traceback") or "").strip().splitlines() if ln.strip()]
    m = _EXC_NAME.match(lines[-1].strip()) if lines else None
    return m.group(1).rsplit(".", 1)[-1] if m else "Exception"


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _tally(tallies: list[_Tally], suite_result) -> None:
    for r in suite_result.results:
        meta = r.expectation_config.meta or {}
        idx = meta.get("gate_index")
        if not isinstance(idx, int) or not 0 <= idx < len(tallies):
            continue
        t = tallies[idx]
        t.seen += 1
        err = _exception_name(r.exception_info)
        if err:
            t.failed, t.error = True, t.error or err
        if r.success is not True:
            t.failed = True
        res = r.result or {}
        unexpected, elements = _int(res.get("unexpected_count")), _int(res.get("element_count"))
        if unexpected is not None and elements is not None:
            t.unexpected += unexpected
            t.elements += elements
            t.counted = True


def _validate(batch_definition, frame: "pd.DataFrame", suite, tallies: list[_Tally]) -> None:
    # What ValidationDefinition.run() does, minus storing a result per chunk in the results store.
    # (Batch.validate() would load the dataframe batch twice: get_batch(), then again in its validator,
    # and each load fingerprints the whole frame.)
    from great_expectations.validator.v1_validator import Validator

    validator = Validator(batch_definition=batch_definition, batch_parameters={"dataframe": frame},
                          result_format=dict(RESULT_FORMAT))
    result = validator.validate_expectation_suite(suite)
    before = [t.seen for t in tallies]
    _tally(tallies, result)
    for t, b in zip(tallies, before):
        if t.seen == b:  # the expectation did not report: fail closed
            t.failed, t.error = True, t.error or "NoResult"
    if result.success is not True and not any(t.failed for t in tallies):
        tallies[0].failed = True


# ------------------------------------------------------------------ the gate's own columns
def _gate_frame(chunk: "pd.DataFrame", subjects, eligibility, suppressed) -> "pd.DataFrame":
    """data.csv's chunk plus the gate's columns. ``suppressed`` is a pyarrow string array (looked up with
    ``pc.is_in``: pandas' ``isin`` on Arrow strings converts the lookup set value by value, ~0.7 s for
    200k keys per chunk)."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(chunk)
    subj = subjects.take(n)
    m = subj.num_rows
    ids_col = subj["customer_id"]
    valid_id = np.zeros(n, dtype=bool)
    valid_id[:m] = pc.is_valid(ids_col).to_numpy(zero_copy_only=False)
    ids = np.zeros(n, dtype=np.int64)
    ids[:m] = pc.fill_null(ids_col, 0).to_numpy(zero_copy_only=False)
    key_chunks = list(subj["subject_key"].chunks) + ([pa.nulls(n - m, pa.string())] if n > m else [])
    key_array = pa.chunked_array(key_chunks, type=pa.string())
    is_suppressed = pc.fill_null(pc.is_in(key_array, value_set=suppressed), False).to_numpy(
        zero_copy_only=False)
    keys = pd.Series(key_array.to_pandas(), dtype="str")
    keys.index = chunk.index
    ok = valid_id & keys.notna().to_numpy() & ~is_suppressed
    if n:
        ok &= eligibility.eligible(ids)
    gate = pd.DataFrame({SUBJECT_KEY: keys, SUBJECT_SUPPRESSED: is_suppressed, SUBJECT_OK: ok},
                        index=chunk.index)
    # concat, not assign: a data.csv column that happens to share a gate column's name stays visible
    # (and fails the ordered column list) instead of being overwritten.
    return pd.concat([chunk, gate], axis=1)


# ------------------------------------------------------------------ run
def run_gate(
    feed: "FeedSpec",
    data_csv: Path,
    subjects_file: Path,
    *,
    shop_url: str,
    run_date: date,
    suppressed: Iterable[str],
    previous_row_count: int | None,
    chunk_rows: int = 100_000,
    shop_schema: str | None = None,
) -> GateResult:
    """Validate a staged delivery (data.csv + subjects.arrow) for ``feed``. Never raises for bad data:
    look at ``passed`` or call ``raise_for_failure()``."""
    import pandas as pd
    import pyarrow as pa

    t0 = time.perf_counter()
    suppressed = pa.array(sorted(set(suppressed)), pa.string())
    checks = feed_checks(feed)
    tallies = [_Tally(c) for c in checks]
    s_checks = summary_checks(feed, previous_row_count)
    s_tallies = [_Tally(c) for c in s_checks]
    gate_errors: list[FailedExpectation] = []
    rows, chunks = 0, 0
    subject_rows: int | None = None
    subjects = eligibility = context = None
    try:
        with _gx_withheld(), _no_batch_fingerprint():
            context = gx_context()
            suite = _suite_from(f"gate_{feed.id}", checks)
            summary_suite = _suite_from(f"gate_{feed.id}_summary", s_checks)
            source = context.data_sources.add_pandas("staged_delivery")
            chunk_batches = source.add_dataframe_asset("chunk").add_batch_definition_whole_dataframe("chunk")
            summary_batches = source.add_dataframe_asset("summary").add_batch_definition_whole_dataframe("summary")

            from .subjects import EligibilityChecker, SubjectReader

            subjects = SubjectReader(subjects_file)
            subject_rows = subjects.num_rows
            eligibility = EligibilityChecker(shop_url, feed.eligibility, run_date, schema=shop_schema)
            reader = pd.read_csv(data_csv, dtype=str, keep_default_na=False, na_values=[""],
                                 chunksize=chunk_rows, encoding="utf-8")
            with reader:
                for chunk in reader:
                    frame = _gate_frame(chunk, subjects, eligibility, suppressed)
                    _validate(chunk_batches, frame, suite, tallies)
                    rows += len(chunk)
                    chunks += 1
                    del frame, chunk
            if chunks == 0:  # header only: still check the columns (and an empty frame's expectations)
                empty = pd.read_csv(data_csv, dtype=str, keep_default_na=False, na_values=[""], nrows=0)
                _validate(chunk_batches, _gate_frame(empty, subjects, eligibility, suppressed), suite, tallies)
            summary = pd.DataFrame({DELIVERY_ROWS: [rows], SUBJECT_ROWS: [subject_rows]})
            _validate(summary_batches, summary, summary_suite, s_tallies)
    except Exception as exc:  # fail closed; keep the class name only (messages can quote data)
        gate_errors.append(FailedExpectation("gate_error", error=type(exc).__name__))
        log.warning("gate for feed %s raised %s", feed.id, type(exc).__name__)
    finally:
        for res in (subjects, eligibility):
            if res is not None:
                try:
                    res.close()
                except Exception:  # noqa: BLE001 - closing must not mask the verdict
                    pass
        if context is not None:
            # GX's project manager keeps the last context, whose engine caches the last batch (a chunk of
            # customer rows): drop the datasource so that data does not outlive the gate.
            try:
                with _gx_withheld():
                    context.data_sources.delete("staged_delivery")
            except Exception:  # noqa: BLE001
                pass

    failed = [t.failure() for t in tallies + s_tallies if t.failed] + gate_errors
    result = GateResult(
        feed_id=feed.id,
        passed=not failed,
        rows=rows,
        failed=failed,
        duration_s=time.perf_counter() - t0,
        subject_rows=subject_rows,
        previous_row_count=previous_row_count,
        allowed_rows=(row_window(previous_row_count, feed.row_count_tolerance, feed.row_count_slack)
                      if previous_row_count is not None else None),
        expectations=len(checks) + len(s_checks),
        chunks=chunks,
    )
    (log.info if result.passed else log.warning)("%s", result.message())
    return result
