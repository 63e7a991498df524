"""Data-quality gate for staged vendor deliveries: GX expectation suites built from the register.

Importing this package is cheap (stdlib only); Great Expectations, pandas, pyarrow and SQLAlchemy are
imported when a gate runs or a suite is built.
"""
from .checks import Check, feed_checks, summary_checks
from .gate import RESULT_FORMAT, build_suite, build_summary_suite, run_gate
from .result import FailedExpectation, GateFailed, GateResult

__all__ = ["Check", "FailedExpectation", "GateFailed", "GateResult", "RESULT_FORMAT", "build_suite",
           "build_summary_suite", "feed_checks", "run_gate", "summary_checks"]
