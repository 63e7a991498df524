"""Benchmark every vendor feed end to end against the sandbox vendors.

    python bench/feeds.py --customers 10000 [--customers 100000]

For each size: builds (or reuses) the synthetic shop, starts the sandbox vendors, and runs each feed's
stages (prepare = extract+filter+minimise, gate, deliver = encrypt+upload+ledger) in a fresh process,
so peak RSS is that feed's own. Prints a table and writes bench/results/feeds_<size>.json.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DAY = dt.date(2026, 11, 1)


def one_feed(feed_id: str, shop: str, ledger_url: str, staging: str) -> dict:
    """Runs in the child process."""
    from vendorprivacy.keys import Keys
    from vendorprivacy.ledger import Ledger
    from vendorprivacy.policy import load_register
    from vendorprivacy.share import FeedRun, deliver, gate, prepare

    vendor, feed = load_register().feed(feed_id)
    ledger = Ledger(ledger_url)
    run = FeedRun(vendor, feed, DAY, shop, ledger, Path(staging), Keys(b"bench-token", b"bench-subject"))
    timings = {}
    # What a warm Airflow worker has already imported; paid once per worker, reported apart.
    t = time.perf_counter()
    import great_expectations  # noqa: F401
    import vendorprivacy.crypto, vendorprivacy.quality.gate, vendorprivacy.transports  # noqa: F401,E401
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook  # noqa: F401
    from airflow.providers.http.hooks.http import HttpHook  # noqa: F401
    from airflow.providers.sftp.hooks.sftp import SFTPHook  # noqa: F401
    timings["worker_imports_s"] = time.perf_counter() - t
    t = time.perf_counter()
    prepared = prepare(run)
    timings["prepare_s"] = time.perf_counter() - t
    t = time.perf_counter()
    gate(run)
    timings["gate_s"] = time.perf_counter() - t
    t = time.perf_counter()
    delivered = deliver(run)
    timings["deliver_s"] = time.perf_counter() - t
    total = timings["prepare_s"] + timings["gate_s"] + timings["deliver_s"]
    rows = delivered["rows"]
    return {"feed": feed_id, "vendor": vendor.vendor, "transport": vendor.transport.kind,
            "extracted": prepared["extracted"], "rows": rows, "bytes": delivered["bytes"],
            **{k: round(v, 3) for k, v in timings.items()}, "total_s": round(total, 3),
            "rows_per_s": round(rows / total) if total else None,
            "extracted_rows_per_s": round(prepared["extracted"] / total) if total else None,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def bench_size(customers: int) -> dict:
    from sandbox import Sandbox
    from vendorprivacy.ledger import Ledger
    from vendorprivacy.policy import load_register
    from vendorprivacy.shop.generate import generate_shop

    state = ROOT / ".state" / "bench"
    state.mkdir(parents=True, exist_ok=True)
    shop_path = state / f"shop_{customers}.db"
    if not shop_path.exists():
        t = time.perf_counter()
        generate_shop(f"sqlite:///{shop_path}", customers=customers, seed=42)
        print(f"shop of {customers} customers built in {time.perf_counter() - t:.1f}s", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(dir=state) as tmp, Sandbox(Path(tmp) / "sandbox") as sb:
        env = {**os.environ, **sb.airflow_env(), "PYTHONPATH": f"{ROOT / 'include'}:{ROOT}"}
        ledger_url = f"sqlite:///{tmp}/ledger.db"
        Ledger(ledger_url).migrate()
        for _, feed in load_register().feeds():
            out = subprocess.run([sys.executable, __file__, "--one", feed.id, "--shop", f"sqlite:///{shop_path}",
                                  "--ledger", ledger_url, "--staging", f"{tmp}/staging"],
                                 env=env, capture_output=True, text=True)
            if out.returncode != 0:
                raise SystemExit(f"{feed.id} failed:\n{out.stderr[-3000:]}")
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(_line(rows[-1]), flush=True)
    result = {"customers": customers, "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "machine": f"{os.cpu_count()} cores", "feeds": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"feeds_{customers}.json").write_text(json.dumps(result, indent=2))
    return result


HEADER = f"{'feed':28} {'via':5} {'extracted':>9} {'rows':>8} {'bytes':>10} {'prepare':>8} {'gate':>6} {'deliver':>8} {'total':>7} {'rows/s':>8} {'RSS MB':>7}"


def _line(r: dict) -> str:
    return (f"{r['feed']:28} {r['transport']:5} {r['extracted']:>9} {r['rows']:>8} {r['bytes']:>10} "
            f"{r['prepare_s']:>8.2f} {r['gate_s']:>6.2f} {r['deliver_s']:>8.2f} {r['total_s']:>7.2f} "
            f"{r['rows_per_s'] or 0:>8} {r['peak_rss_mb']:>7}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--customers", type=int, action="append")
    p.add_argument("--one")
    p.add_argument("--shop")
    p.add_argument("--ledger")
    p.add_argument("--staging")
    args = p.parse_args()
    if args.one:
        print(json.dumps(one_feed(args.one, args.shop, args.ledger, args.staging)))
        return 0
    for size in args.customers or [10_000]:
        print(f"\n{size} customers\n{HEADER}", flush=True)
        bench_size(size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
