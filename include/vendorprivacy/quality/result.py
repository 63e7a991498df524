"""What the gate hands back: pass/fail, counts and expectation names. Never a value from the data.

Everything here is built from counts, names the register chose (feed id, column names, check labels) and
exception *class* names. Nothing GX returns as text (observed values, partial unexpected lists, exception
messages, tracebacks) is copied in, so a result can go to XCom, the ledger, logs or an alert as is.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["FailedExpectation", "GateFailed", "GateResult"]


class GateFailed(Exception):
    """The data-quality gate did not pass: nothing may leave. The message is PII-free."""

    def __init__(self, message: str, result: "GateResult | None" = None) -> None:
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class FailedExpectation:
    expectation_type: str                 # e.g. expect_column_values_to_match_regex, or "gate_error"
    column: str | None = None             # None for table-level checks
    check: str | None = None              # the gate's own label for the check (e.g. "sha256", "formula_lead")
    unexpected_count: int | None = None   # summed over all chunks
    element_count: int | None = None      # summed over all chunks
    error: str | None = None              # exception class name only (GX raised, or the gate itself did)

    def describe(self) -> str:
        text = self.expectation_type
        if self.column:
            text += f" on {self.column}"
        if self.error:
            text += f" (raised {self.error})"
        elif self.unexpected_count is not None and self.element_count is not None:
            text += f" ({self.unexpected_count} of {self.element_count} rows)"
        if self.check and self.check not in self.expectation_type:
            text += f" [{self.check}]"
        return text


@dataclass(frozen=True)
class GateResult:
    feed_id: str
    passed: bool
    rows: int                              # rows read from data.csv
    failed: list[FailedExpectation] = field(default_factory=list)
    duration_s: float = 0.0
    subject_rows: int | None = None        # rows in subjects.arrow (None when it could not be read)
    previous_row_count: int | None = None
    allowed_rows: tuple[float, float] | None = None  # row-count window derived from the previous delivery
    expectations: int = 0                  # expectations evaluated per chunk + on the summary
    chunks: int = 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["failed"] = [asdict(f) for f in self.failed]
        d["allowed_rows"] = list(self.allowed_rows) if self.allowed_rows is not None else None
        d["duration_s"] = round(self.duration_s, 3)
        return d

    def message(self) -> str:
        if self.passed:
            return (f"gate passed for feed {self.feed_id}: {self.rows} rows, "
                    f"{self.expectations} expectations, {self.duration_s:.1f} s")
        parts = []
        for f in self.failed:
            text = f.describe()
            if f.check == "row_count_vs_previous" and self.allowed_rows is not None and not f.error:
                lo, hi = self.allowed_rows
                text += (f": {self.rows} rows, allowed {lo:g}..{hi:g} "
                         f"(previous delivery {self.previous_row_count})")
            elif f.check == "subjects_row_count" and not f.error:
                text += f": data.csv has {self.rows} rows, subjects file {self.subject_rows}"
            parts.append(text)
        return f"gate failed for feed {self.feed_id}: " + "; ".join(parts)

    def raise_for_failure(self) -> "GateResult":
        if not self.passed:
            raise GateFailed(self.message(), self)
        return self
