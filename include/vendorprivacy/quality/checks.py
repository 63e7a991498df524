"""The checks a feed's delivery must pass, derived from its register entry. Plain data, no GX import.

``feed_checks(feed)`` lists what ``build_suite(feed)`` turns into GX expectations; keeping the plan GX-free
lets the DAG layer, the audit and the tests show it without paying for ``import great_expectations``.

Regexes are written to mean the same in Python's ``re`` and in RE2 (pandas evaluates ``str.contains`` with
pyarrow's RE2 for pyarrow-backed strings and with ``re`` otherwise): ``\\A``/``\\Z`` anchors (``$`` in
Python also matches before a trailing newline), explicit ``[0-9]`` instead of ``\\d`` (Unicode digits in
Python), no look-arounds. GX's pandas regex metric *searches* (``str.contains``), so full-value patterns
are anchored at both ends.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from vendorprivacy.policy.models import FeedSpec

__all__ = [
    "Check", "feed_checks", "summary_checks", "frame_columns", "row_window",
    "SUBJECT_KEY", "SUBJECT_SUPPRESSED", "SUBJECT_OK", "DELIVERY_ROWS", "SUBJECT_ROWS",
    "HEX64", "E164_PLUS", "E164_DIGITS", "EMAIL_NORMALISED", "FORMULA_LEAD", "EMAIL_IN_TEXT",
]

# Columns the gate adds to every chunk: the row's subject key (from subjects.arrow), whether that key is
# suppressed, and the gate's own eligibility verdict (rules + suppression, see subjects.py).
SUBJECT_KEY = "_subject_key"
SUBJECT_SUPPRESSED = "_subject_suppressed"
SUBJECT_OK = "_subject_ok"
# Columns of the one-row summary frame.
DELIVERY_ROWS = "_delivery_rows"
SUBJECT_ROWS = "_subject_rows"

HEX64 = r"\A[0-9a-f]{64}\Z"
E164_PLUS = r"\A\+[1-9][0-9]{6,14}\Z"
E164_DIGITS = r"\A[1-9][0-9]{6,14}\Z"
# Normalised (trimmed, lower-cased) address: no whitespace, no capitals, a dotted domain.
EMAIL_NORMALISED = (r"\A[a-z0-9!#$%&'*+/=?^_`{|}~.\-]+"
                    r"@[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?)+\Z")
# A cell starting with one of these is (or can become) a spreadsheet formula; neutralised cells start with '.
FORMULA_LEAD = r"\A[=+\-@\t\r\x00]"
# Any e-mail address anywhere in free text.
EMAIL_IN_TEXT = r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+"


@dataclass(frozen=True)
class Check:
    expectation: str                  # GX expectation class, e.g. "ExpectColumnValuesToMatchRegex"
    check: str                        # the gate's label, carried into failures
    column: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def expectation_type(self) -> str:
        """snake_case name as GX reports it (expect_column_values_to_match_regex)."""
        name = self.expectation
        return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


def frame_columns(feed: "FeedSpec") -> list[str]:
    """Columns of each validated chunk: data.csv's columns in register order, then the gate's own."""
    return [f.name for f in feed.sent_fields] + [SUBJECT_KEY, SUBJECT_SUPPRESSED, SUBJECT_OK]


def feed_checks(feed: "FeedSpec") -> list[Check]:
    checks = [Check("ExpectTableColumnsToMatchOrderedList", "column_set",
                    kwargs={"column_list": frame_columns(feed)})]
    for f in feed.sent_fields:
        if not f.nullable:
            checks.append(Check("ExpectColumnValuesToNotBeNull", "not_null", f.name))
        if f.transform in ("sha256", "hmac"):
            checks.append(Check("ExpectColumnValuesToMatchRegex", f.transform, f.name, {"regex": HEX64}))
        elif f.transform == "e164":
            checks.append(Check("ExpectColumnValuesToMatchRegex", "e164" if f.plus else "e164_digits", f.name,
                                {"regex": E164_PLUS if f.plus else E164_DIGITS}))
        elif f.transform == "truncate":
            checks.append(Check("ExpectColumnValueLengthsToBeBetween", "truncate", f.name,
                                {"max_value": f.length}))
        elif f.transform == "email":
            checks.append(Check("ExpectColumnValuesToMatchRegex", "email_normalised", f.name,
                                {"regex": EMAIL_NORMALISED}))
        elif f.transform == "text":
            checks.append(Check("ExpectColumnValueLengthsToBeBetween", "text_length", f.name,
                                {"max_value": f.length}))
            checks.append(Check("ExpectColumnValuesToNotMatchRegex", "formula_lead", f.name,
                                {"regex": FORMULA_LEAD}))
            checks.append(Check("ExpectColumnValuesToNotMatchRegex", "email_in_text", f.name,
                                {"regex": EMAIL_IN_TEXT}))
        # keep: presence (not-null) only; drop never reaches the file.
    checks += [
        Check("ExpectColumnValuesToNotBeNull", "subject_key_present", SUBJECT_KEY),
        Check("ExpectColumnValuesToMatchRegex", "subject_key_format", SUBJECT_KEY, {"regex": HEX64}),
        # Membership is looked up in pandas, not by ExpectColumnValuesToNotBeInSet(value_set=suppressed):
        # GX re-validates a value_set element by element (pydantic v1) for every metric it derives, which
        # took 17 s per 100k-row chunk with 200k suppressed keys, against 0.5 s for the whole gate.
        Check("ExpectColumnValuesToBeInSet", "not_suppressed", SUBJECT_SUPPRESSED, {"value_set": [False]}),
        Check("ExpectColumnValuesToBeInSet", "eligible", SUBJECT_OK, {"value_set": [True]}),
    ]
    return checks


def row_window(previous_row_count: int, tolerance: float, slack: int = 0) -> tuple[float, float]:
    """Relative tolerance around the last delivery, widened by an absolute slack so that small daily
    feeds (8 orders one day, 15 the next, none on a holiday) are not stopped by ordinary variation."""
    return (max(0.0, previous_row_count * (1 - tolerance) - slack), previous_row_count * (1 + tolerance) + slack)


def summary_checks(feed: "FeedSpec", previous_row_count: int | None) -> list[Check]:
    """Checks on the one-row summary frame (DELIVERY_ROWS, SUBJECT_ROWS): totals span chunks."""
    checks = [Check("ExpectColumnPairValuesToBeEqual", "subjects_row_count",
                    kwargs={"column_A": DELIVERY_ROWS, "column_B": SUBJECT_ROWS})]
    if previous_row_count is not None:
        lo, hi = row_window(previous_row_count, feed.row_count_tolerance, feed.row_count_slack)
        checks.append(Check("ExpectColumnValuesToBeBetween", "row_count_vs_previous", DELIVERY_ROWS,
                            {"min_value": lo, "max_value": hi}))
    return checks
