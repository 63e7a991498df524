"""Shared pieces of the benchmarks: paths, the machine's state, child processes that report one JSON line."""
from __future__ import annotations

import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
STATE = ROOT / ".state" / "bench"
DAY = dt.date(2026, 11, 1)
SEED = 42
KEYS = (b"bench-token-key", b"bench-subject-key")
IDENTITY_KEY = "bench-identity-key-0123456789abcdef"


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def rss_mb() -> float:
    """Current resident set size of this process."""
    try:
        with open("/proc/self/statm") as fh:
            return round(int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
    except OSError:  # pragma: no cover - not Linux
        return peak_rss_mb()


def machine() -> dict:
    """What the numbers were measured on, and how busy the machine was (others run tests here too)."""
    try:
        mem_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):  # pragma: no cover
        mem_gb = None
    return {"cores": os.cpu_count(), "memory_gb": mem_gb, "python": platform.python_version(),
            "loadavg": [round(x, 2) for x in os.getloadavg()]}


def child_env(extra: dict | None = None) -> dict:
    env = {**os.environ, **(extra or {})}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "include"), str(ROOT)] +
                                        ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.setdefault("GX_ANALYTICS_ENABLED", "False")
    env.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    return env


def run_child(args: list[str], env: dict, timeout: float = 3600) -> dict:
    """``python -m bench worker <args>`` in a fresh process (its peak RSS is its own); the last stdout line
    is its JSON result."""
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "bench", "worker", *args], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"bench worker {' '.join(args[:2])} failed (exit {out.returncode}):\n{out.stderr[-4000:]}")
    lines = [ln for ln in out.stdout.strip().splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError(f"bench worker {' '.join(args[:2])} printed no result:\n{out.stderr[-4000:]}")
    result = json.loads(lines[-1])
    result.setdefault("process_wall_s", round(time.perf_counter() - started, 3))
    return result


def emit(result: dict) -> None:
    print(json.dumps(result, default=str), flush=True)


def write_json(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)
    return path
