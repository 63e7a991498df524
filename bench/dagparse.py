"""DAG parsing benchmark: the whole dags/ folder, and each file on its own, each in a fresh process.

Airflow itself is imported before the clock starts (the DAG processor has it loaded already); what is timed
is what our DAG files cost to parse: importing the orchestration layer, loading the register, building DAGs.
"""
from __future__ import annotations

import time
import warnings
from pathlib import Path

from bench.common import ROOT, peak_rss_mb

DAGS = ROOT / "dags"


def parse(target: str) -> dict:
    """Runs in the child process: DagBag over ``target`` (the folder or one file)."""
    from airflow.dag_processing.dagbag import DagBag  # noqa: F401 - Airflow is loaded in the processor

    import airflow.sdk  # noqa: F401

    loaded_before = set(__import__("sys").modules)
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bag = DagBag(dag_folder=target)
    elapsed = time.perf_counter() - t
    heavy = sorted(m for m in ("great_expectations", "pandas", "pyarrow", "duckdb", "gnupg", "paramiko", "boto3",
                               "phonenumbers") if m in __import__("sys").modules and m not in loaded_before)
    stats = [{"file": str(Path(s.file).name if hasattr(s, "file") else s[0]),
              "duration_s": round(_seconds(getattr(s, "duration", None)), 3),
              "dags": getattr(s, "dag_num", None), "tasks": getattr(s, "task_num", None)}
             for s in getattr(bag, "dagbag_stats", [])]
    return {"target": str(Path(target).relative_to(ROOT)), "seconds": round(elapsed, 3), "dags": len(bag.dags),
            "import_errors": len(bag.import_errors), "heavy_modules_imported": heavy, "files": stats,
            "peak_rss_mb": peak_rss_mb()}


def _seconds(d) -> float:
    if d is None:
        return 0.0
    return d.total_seconds() if hasattr(d, "total_seconds") else float(d)


def files() -> list[Path]:
    return sorted(p for p in DAGS.glob("*.py") if not p.name.startswith("_"))
