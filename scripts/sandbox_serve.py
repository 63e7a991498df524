"""The sandbox vendors for `make up`: like `python -m sandbox up` (prints the AIRFLOW_CONN_* exports, runs until
SIGTERM), and in addition the file vendors (SFTP, S3) load complete deliveries into their stores every few
seconds, as a real vendor would process what lands in its inbox, so that what a vendor holds (and what an
erasure request can find there) follows the feeds without a test calling `Sandbox.ingest()`.
"""
from __future__ import annotations

import argparse
import shlex
import signal
import sys
import threading
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--state-dir", type=Path, required=True)
    p.add_argument("--ingest-seconds", type=float, default=3.0)
    p.add_argument("--erasure-poll-seconds", type=float, default=1.0)
    args = p.parse_args(argv)

    from sandbox import Sandbox

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with Sandbox(args.state_dir, erasure_poll_interval=args.erasure_poll_seconds) as sb:
        for key, value in sb.airflow_env().items():
            print(f"export {key}={shlex.quote(value)}")
        sys.stdout.flush()
        print(f"# sandbox up in {sb.startup_seconds:.2f}s; state in {sb.state_dir}; file vendors ingest every "
              f"{args.ingest_seconds:g}s", file=sys.stderr, flush=True)
        while not stop.wait(args.ingest_seconds):
            try:
                with sb._erasure_lock:   # never while the vendors are answering erasure requests
                    sb.ingest()
            except Exception as e:  # noqa: BLE001 - a bad file must not stop the vendors
                print(f"# ingest: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
