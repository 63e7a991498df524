"""vendorprivacy: the command line for the people who keep the notice true.

  vendorprivacy policy check           validate the notice and the vendor register, then lint them
  vendorprivacy policy show            the register as a table: vendor, feed, fields and categories
  vendorprivacy shop generate          build the synthetic shop database (deterministic)
  vendorprivacy shop describe          row counts of the shop tables
  vendorprivacy deliveries             what the ledger says has left, feed by feed
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

DEFAULT_SHOP = os.environ.get("VENDORPRIVACY_SHOP_URL", "sqlite:///.state/shop.db")
DEFAULT_LEDGER = os.environ.get("VENDORPRIVACY_LEDGER_URL", "sqlite:///.state/ledger.db")


def _policy_check(args) -> int:
    from .policy import PolicyError, lint, load_notice, load_register

    try:
        notice, register = load_notice(args.policy_dir), load_register(args.policy_dir)
    except PolicyError as e:
        print("The register or notice is invalid:", file=sys.stderr)
        for p in e.problems:
            print(f"  - {p}", file=sys.stderr)
        return 2
    findings = lint(register, notice)
    for f in findings:
        print(f, file=sys.stderr if f.severity == "error" else sys.stdout)
    errors = sum(f.severity == "error" for f in findings)
    n_feeds = len(register.feeds())
    print(f"policy check: {len(register.vendors)} vendors, {n_feeds} feeds, {errors} error(s), "
          f"{len(findings) - errors} warning(s)")
    return 1 if errors else 0


def _policy_show(args) -> int:
    from .policy import load_register

    for vendor, feed in load_register(args.policy_dir).feeds():
        print(f"{vendor.vendor} ({vendor.recipient_category}, {vendor.transport.kind}) feed {feed.id} [{feed.schedule}]")
        print(f"    eligibility: {', '.join(feed.eligibility)}")
        for f in feed.fields:
            extra = f" {f.normaliser}" if f.normaliser else ""
            print(f"    {f.name:24} {f.category:36} {f.transform}{extra}")
    return 0


def _shop_generate(args) -> int:
    from .shop.generate import generate_shop

    url = args.url
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    planted = generate_shop(url, customers=args.customers, seed=args.seed)
    print(f"shop: {args.customers} customers (seed {args.seed}) in {url}")
    for kind, count in planted.counts().items():
        print(f"  planted {kind:28} {count}")
    return 0


def _shop_describe(args) -> int:
    from .shop.generate import describe_shop

    for table, count in describe_shop(args.url).items():
        print(f"{table:16} {count:>10}")
    return 0


def _deliveries(args) -> int:
    from .ledger import Ledger

    rows = Ledger(args.ledger).deliveries()
    print(f"{'feed':30} {'date':10} {'status':12} {'rows':>7} {'bytes':>9}  sha256")
    for d in rows:
        print(f"{d.feed_id:30} {d.logical_date!s:10} {d.status:12} {d.row_count or 0:>7} {d.bytes or 0:>9}  {(d.sha256 or '')[:16]}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vendorprivacy", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    pol = sub.add_parser("policy", help="the notice and the vendor register").add_subparsers(dest="action", required=True)
    for name, fn, help_ in (("check", _policy_check, "validate and lint; exit 1 on any error"),
                            ("show", _policy_show, "print every feed's fields and categories")):
        s = pol.add_parser(name, help=help_)
        s.add_argument("--policy-dir", type=Path, default=None, help="folder with notice.yaml and vendors/ (default include/policy)")
        s.set_defaults(fn=fn)

    shop = sub.add_parser("shop", help="the synthetic shop database").add_subparsers(dest="action", required=True)
    g = shop.add_parser("generate", help="build the synthetic shop (replaces its tables)")
    g.add_argument("--url", default=DEFAULT_SHOP, help="SQLAlchemy URL or SQLite path (default %(default)s)")
    g.add_argument("--customers", type=int, default=10_000)
    g.add_argument("--seed", type=int, default=42)
    g.set_defaults(fn=_shop_generate)
    d = shop.add_parser("describe", help="row counts per table")
    d.add_argument("--url", default=DEFAULT_SHOP)
    d.set_defaults(fn=_shop_describe)

    dl = sub.add_parser("deliveries", help="deliveries recorded in the ledger")
    dl.add_argument("--ledger", default=DEFAULT_LEDGER, help="ledger SQLAlchemy URL (default %(default)s)")
    dl.set_defaults(fn=_deliveries)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
