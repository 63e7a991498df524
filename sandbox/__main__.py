"""``python -m sandbox up --state-dir D``: start the sandbox vendors, print the env, wait for Ctrl-C."""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import threading
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start sshd, moto and the vendor API; print export lines; wait")
    up.add_argument("--state-dir", type=Path, default=Path(".state/sandbox"))
    up.add_argument("--erasure-poll-seconds", type=float, default=1.0,
                    help="how often file vendors answer erasure requests in the background (0: never)")
    up.add_argument("--opendsr-delay-seconds", type=float, default=0.0,
                    help="how long an OpenDSR request waits before the vendor processes it")
    up.add_argument("--ingest-seconds", type=float, default=3.0,
                    help="how often file vendors (SFTP, S3) load complete deliveries into their stores, as a real "
                         "vendor processes its inbox, so erasure requests find what was delivered (0: never)")
    args = parser.parse_args(argv)

    from sandbox import Sandbox

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with Sandbox(args.state_dir, erasure_poll_interval=args.erasure_poll_seconds or None,
                 opendsr_delay=args.opendsr_delay_seconds) as sb:
        for key, value in sb.airflow_env().items():
            print(f"export {key}={shlex.quote(value)}")
        print(f"export VENDORPRIVACY_STAGING_URL={shlex.quote(sb.staging_url())}")
        print(f"# sandbox up in {sb.startup_seconds:.2f}s; state in {sb.state_dir}; Ctrl-C to stop",
              file=sys.stderr, flush=True)
        sys.stdout.flush()
        while not stop.wait(args.ingest_seconds or 0.5):
            if not args.ingest_seconds:
                continue
            try:
                sb.ingest()
            except Exception as e:  # noqa: BLE001 - one bad file must not stop the vendors
                print(f"# ingest: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
