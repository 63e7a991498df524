"""``python -m sandbox.make_keys``: regenerate the sandbox vendors' throwaway OpenPGP keypairs.

Public keys go to ``include/policy/keys/<vendor>.asc`` (what pipelines encrypt to); secret keys to
``sandbox/keys/<vendor>.sec.asc`` (what the sandbox vendors decrypt with). These keys protect
nothing real: they are committed so tests and the demo work offline. Real vendors' public keys
replace the ``.asc`` files in production; their secret keys never come near this repository.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from sandbox import POLICY_KEYS_DIR, SANDBOX_KEYS_DIR
from sandbox.vendors import DEFAULT_VENDORS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.make_keys")
    parser.add_argument("vendors", nargs="*", help="vendor ids (default: all default vendors)")
    args = parser.parse_args(argv)

    from vendorprivacy.crypto import generate_keypair

    vendors = args.vendors or list(dict.fromkeys(v.vendor for v in DEFAULT_VENDORS))
    POLICY_KEYS_DIR.mkdir(parents=True, exist_ok=True)
    SANDBOX_KEYS_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for vendor in vendors:
            public, secret = generate_keypair(
                f"{vendor} (SANDBOX ONLY - not a real vendor key)", f"{vendor}@sandbox.invalid", Path(tmp)
            )
            shutil.copyfile(public, POLICY_KEYS_DIR / f"{vendor}.asc")
            shutil.copyfile(secret, SANDBOX_KEYS_DIR / f"{vendor}.sec.asc")
            print(f"{vendor}: {POLICY_KEYS_DIR / f'{vendor}.asc'} + {SANDBOX_KEYS_DIR / f'{vendor}.sec.asc'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
