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
    args = parser.parse_args(argv)

    from sandbox import Sandbox

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with Sandbox(args.state_dir) as sb:
        for key, value in sb.airflow_env().items():
            print(f"export {key}={shlex.quote(value)}")
        print(f"# sandbox up in {sb.startup_seconds:.2f}s; state in {sb.state_dir}; Ctrl-C to stop",
              file=sys.stderr, flush=True)
        sys.stdout.flush()
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
