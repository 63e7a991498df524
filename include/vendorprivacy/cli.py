"""vendorprivacy: the command line for the people who keep the notice true.

  vendorprivacy policy check           validate the notice and the vendor register, then lint them
  vendorprivacy policy show            the register as a table: vendor, feed, fields and categories
  vendorprivacy shop generate          build the synthetic shop database (deterministic)
  vendorprivacy shop describe          row counts of the shop tables
  vendorprivacy deliveries             what the ledger says has left, feed by feed
  vendorprivacy erasure file|import    file erasure / opt-out requests (one subject, or a CSV batch)
  vendorprivacy erasure list|show      requests and each vendor's status
  vendorprivacy erasure run            propagate without Airflow (the erasure_propagation DAG does the same)
  vendorprivacy erasure deadlines      requests and vendors at risk of missing their legal due date
  vendorprivacy audit run              the nightly minimisation audit without Airflow (report + JSON)
  vendorprivacy audit disclosure       one person's right-to-know report (categories shared, never data)
  vendorprivacy audit data-map         the register-wide record of processing (CSV + HTML)
  vendorprivacy audit accept-column    a reviewed source column stops being reported as schema drift
  vendorprivacy audit screenshot       render a report in headless Chromium; check its charts are drawn
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


# ---------------------------------------------------------------------------------------------- erasure
def _erasure_store(args):
    from .erasure.store import ErasureStore
    from .ledger import Ledger

    led = Ledger(args.ledger)
    led.migrate()
    return ErasureStore(led)


def _print_filed(filed) -> None:
    for f in filed:
        ack = f", acknowledge by {f.ack_due}" if f.ack_due else ""
        print(f"filed {f.ticket} {f.regulation} {f.request_type}: received {f.received_on}, due {f.due}{ack} "
              f"(request {f.request_id})")


def _erasure_file(args) -> int:
    from .erasure.identity import IdentityKeyError, identity_cipher
    from .erasure.intake import file_request
    from .erasure.requests import InvalidRequests

    try:
        cipher = identity_cipher()
        filed = file_request(_erasure_store(args), cipher, ticket=args.ticket, regulation=args.regulation,
                             request_type=args.type, email=args.email, phone=args.phone, country=args.country,
                             received=args.received)
    except (InvalidRequests, IdentityKeyError) as e:
        print(f"nothing filed: {e}", file=sys.stderr)
        return 2
    _print_filed([filed])
    return 0


def _erasure_import(args) -> int:
    from .erasure.identity import IdentityKeyError, identity_cipher
    from .erasure.intake import import_csv
    from .erasure.requests import InvalidRequests

    try:
        cipher = identity_cipher()
        filed = import_csv(_erasure_store(args), cipher, args.csv)
    except (InvalidRequests, IdentityKeyError) as e:
        print(f"{args.csv}: nothing filed: {e}", file=sys.stderr)
        return 2
    except FileNotFoundError:
        print(f"{args.csv}: no such file", file=sys.stderr)
        return 2
    _print_filed(filed)
    print(f"{len(filed)} request(s) filed from {args.csv}")
    return 0


def _erasure_under_13(args) -> int:
    from .erasure.identity import IdentityKeyError, identity_cipher
    from .erasure.intake import file_under_13
    from .orchestration.settings import keys

    try:
        counts = file_under_13(_erasure_store(args), identity_cipher(), args.shop, keys())
    except IdentityKeyError as e:
        print(f"nothing filed: {e}", file=sys.stderr)
        return 2
    print(", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in counts.items()))
    return 0


def _erasure_list(args) -> int:
    from collections import Counter

    store = _erasure_store(args)
    reqs = store.requests(statuses=args.status or None)
    pairs: dict[str, Counter] = {}
    for p in store.pairs([r.request_id for r in reqs]) if reqs else []:
        pairs.setdefault(p.request_id, Counter())[p.status] += 1
    print(f"{'ticket':16} {'type':8} {'reg':5} {'received':10} {'due':10} {'status':12} vendors")
    for r in reqs:
        summary = ", ".join(f"{k} {v}" for k, v in sorted(pairs.get(r.request_id, Counter()).items())) or "-"
        print(f"{r.ticket:16} {r.request_type:8} {r.regulation:5} {r.received_on!s:10} {r.effective_due!s:10} "
              f"{r.status:12} {summary}")
    return 0


def _erasure_show(args) -> int:
    store = _erasure_store(args)
    reqs = store.requests(tickets=[args.ticket])
    if not reqs:
        print(f"no request with ticket {args.ticket}", file=sys.stderr)
        return 1
    for r in reqs:
        print(f"{r.ticket} {r.regulation} {r.request_type} ({r.request_id}): {r.status}, received {r.received_on}, "
              f"due {r.effective_due}")
        for p in store.pairs([r.request_id]):
            ref = f" ref {p.vendor_reference}" if p.vendor_reference else ""
            print(f"  {p.vendor:12} {p.status:15}{ref}  {p.reason or ''}")
    return 0


def _erasure_run(args) -> int:
    import json
    import uuid

    from .erasure import propagate
    from .erasure.evidence import reports_dir
    from .erasure.identity import identity_cipher
    from .erasure.store import ErasureStore
    from .ledger import Ledger
    from .orchestration.settings import keys
    from .policy import load_notice, load_register

    led = Ledger(args.ledger)
    led.migrate()
    ctx = propagate.Context(store=ErasureStore(led), shop_url=args.shop, keys=keys(), cipher=identity_cipher(),
                            register=load_register(), notice=load_notice(), reports_dir=reports_dir(),
                            protocol_options={"evidence_dir": reports_dir() / "vendor_answers"})
    result = propagate.run_once(ctx, args.requests, run_id=f"cli-{uuid.uuid4()}", dry_run=not args.send,
                                wait_seconds=args.wait)
    result.get("resolve", {}).pop("requests_detail", None)
    print(json.dumps(result, indent=2, default=str))
    return 0


def _erasure_deadlines(args) -> int:
    from .erasure.alerts import deadline_check
    from .policy import load_register

    found = deadline_check(_erasure_store(args), margin_days=args.margin_days, register=load_register(),
                           record=not args.no_record)
    for a in found:
        print(a.line())
    print(f"{len(found)} alert(s)")
    return 1 if any(a.level == "overdue" for a in found) else 0


def _erasure_extend(args) -> int:
    import datetime as dt

    store = _erasure_store(args)
    reqs = [r for r in store.requests(tickets=[args.ticket]) if r.request_type == args.type]
    if not reqs:
        print(f"no {args.type} request with ticket {args.ticket}", file=sys.stderr)
        return 1
    try:
        r = store.extend(reqs[0].request_id, dt.date.fromisoformat(args.noticed), actor=args.by)
    except ValueError as e:
        print(f"not extended: {e}", file=sys.stderr)
        return 2
    print(f"{r.ticket} {r.request_type}: due date now {r.effective_due}")
    return 0


def _erasure_purge(args) -> int:
    n = _erasure_store(args).purge_expired(months=args.months)
    print(f"{n} request record(s) older than {args.months} months deleted")
    return 0


def _erasure_parser(sub) -> None:
    er = sub.add_parser("erasure", help="erasure and opt-out requests").add_subparsers(dest="action", required=True)

    def add(name, fn, help_):
        s = er.add_parser(name, help=help_)
        s.add_argument("--ledger", default=DEFAULT_LEDGER, help="ledger SQLAlchemy URL (default %(default)s)")
        s.set_defaults(fn=fn)
        return s

    f = add("file", _erasure_file, "file one request (the identity key must be configured)")
    f.add_argument("--ticket", required=True, help="the privacy team's reference, e.g. T-123 (no personal data)")
    f.add_argument("--regulation", required=True, help="ccpa or gdpr")
    f.add_argument("--type", required=True, help="erasure or opt_out")
    f.add_argument("--email")
    f.add_argument("--phone")
    f.add_argument("--country", help="two-letter country of the phone number (e.g. US)")
    f.add_argument("--received", help="date received, YYYY-MM-DD (default today)")
    i = add("import", _erasure_import, "file a CSV of requests: all rows or none")
    i.add_argument("csv", type=Path, help="columns: ticket, regulation, type, email, phone, country, received")
    u = add("file-under-13", _erasure_under_13, "file an erasure and an opt-out for every under-13 in the shop")
    u.add_argument("--shop", default=DEFAULT_SHOP)
    ls = add("list", _erasure_list, "requests with their vendors' statuses")
    ls.add_argument("--status", action="append", choices=["filed", "in_progress", "complete"])
    sh = add("show", _erasure_show, "one ticket, vendor by vendor")
    sh.add_argument("ticket")
    r = add("run", _erasure_run, "propagate without Airflow (dry run unless --send)")
    r.add_argument("--shop", default=DEFAULT_SHOP)
    r.add_argument("--requests", default="all pending", help="'all pending' or ticket references")
    r.add_argument("--send", action="store_true", help="really suppress and send (default: dry run)")
    r.add_argument("--wait", type=float, default=0, help="seconds to wait for vendors' answers")
    dl = add("deadlines", _erasure_deadlines, "alerts for open requests near or past their due date (exit 1 if overdue)")
    dl.add_argument("--margin-days", type=int, default=7)
    dl.add_argument("--no-record", action="store_true", help="do not add the alerts to the timelines")
    ex = add("extend", _erasure_extend, "use the one extension the law allows (after notifying the subject)")
    ex.add_argument("ticket")
    ex.add_argument("--type", default="erasure", choices=["erasure", "opt_out"])
    ex.add_argument("--noticed", required=True, help="date the subject was told, YYYY-MM-DD")
    ex.add_argument("--by", help="who decided")
    pg = add("purge-expired", _erasure_purge, "delete request records completed more than --months ago")
    pg.add_argument("--months", type=int, default=24)


# ---------------------------------------------------------------------------------------------- audit
def _audit_ledger(url: str):
    from .audit import tables
    from .ledger import Ledger

    led = Ledger(url)
    led.migrate()
    tables.migrate(led.engine)
    return led


def _audit_run(args) -> int:
    import datetime as dt
    import json

    from .audit.context import AuditContext, reports_root
    from .audit.run import run_audit
    from .orchestration.settings import keys
    from .policy import load_notice, load_register

    ctx = AuditContext(register=load_register(), notice=load_notice(), ledger=_audit_ledger(args.ledger),
                       shop_url=args.shop, keys=keys(), day=dt.date.fromisoformat(args.day) if args.day else
                       dt.datetime.now(dt.timezone.utc).date(), reports_dir=args.reports or reports_root(),
                       lookback_days=args.lookback_days, verify_copies=not args.no_verify_copies,
                       send_removals=not args.no_removals, margin_days=args.margin_days,
                       record_alerts=not args.no_record)
    summary = run_audit(ctx)
    print(json.dumps(summary, indent=2))
    return 1 if summary["counts"]["critical"] else 0


def _audit_disclosure(args) -> int:
    import datetime as dt

    from .audit import disclosure
    from .audit.context import reports_root
    from .orchestration.settings import keys
    from .policy import load_notice, load_register

    try:
        subject = disclosure.subject_keys(args.shop, keys(), email=args.email, phone=args.phone, country=args.country)
        report = disclosure.build(_audit_ledger(args.ledger), load_register(), load_notice(), subject,
                                  ticket=args.ticket, today=dt.date.fromisoformat(args.day) if args.day else
                                  dt.datetime.now(dt.timezone.utc).date(), months=args.months)
    except disclosure.DisclosureError as e:
        print(f"no report: {e}", file=sys.stderr)
        return 2
    paths = disclosure.write(report, (args.reports or reports_root()) / "disclosure")
    print(f"{args.ticket}: {report['customer_records_found']} customer record(s) found; "
          f"{len(report['recipient_categories'])} recipient categor(ies) in {report['period']['from']}..{report['period']['to']}")
    for r in report["recipient_categories"]:
        print(f"  {r['title']}: {len(r['categories'])} data categor(ies), {r['deliveries']} disclosure(s)")
    print(f"report: {paths['html']} (JSON: {paths['json']})")
    return 0


def _audit_data_map(args) -> int:
    from .audit.context import reports_root
    from .audit.datamap import write_data_map
    from .policy import load_notice, load_register

    paths = write_data_map(load_register(), load_notice(), args.out or reports_root() / "audit")
    print(f"data map: {paths['data_map_html']} and {paths['data_map_csv']}")
    return 0


def _audit_accept_column(args) -> int:
    from .audit.schema import accept_column

    table, _, column = args.column.partition(".")
    if not column:
        print("give the column as table.column", file=sys.stderr)
        return 2
    if not accept_column(_audit_ledger(args.ledger), table, column, args.by, args.reason):
        print(f"the audit has never seen {args.column}", file=sys.stderr)
        return 1
    print(f"{args.column}: accepted by {args.by}; no longer reported as schema drift")
    return 0


def _audit_screenshot(args) -> int:
    from .audit import browser

    if browser.find_chromium() is None:
        print("chromium is not installed (Debian: apt-get install -y chromium)", file=sys.stderr)
        return 2
    drawn = browser.charts_drawn(browser.dump_dom(args.html))
    png = browser.screenshot(args.html, args.png, width=args.width, height=args.height)
    print(f"{drawn} chart(s) drawn; screenshot {png} ({'x'.join(map(str, browser.png_size(png)))})")
    return 0 if drawn else 1


def _audit_parser(sub) -> None:
    au = sub.add_parser("audit", help="the nightly minimisation audit and its reports").add_subparsers(dest="action",
                                                                                                        required=True)
    r = au.add_parser("run", help="audit one night (exit 1 on a critical finding)")
    r.add_argument("--day", help="the night to audit, YYYY-MM-DD (default today, UTC)")
    r.add_argument("--lookback-days", type=int, default=1)
    r.add_argument("--shop", default=DEFAULT_SHOP)
    r.add_argument("--ledger", default=DEFAULT_LEDGER)
    r.add_argument("--reports", type=Path, help="reports folder (default VENDORPRIVACY_REPORTS_DIR or .state/reports)")
    r.add_argument("--no-verify-copies", action="store_true", help="do not read the vendors' copies back")
    r.add_argument("--no-removals", action="store_true", help="report consent drift without sending removal lists")
    r.add_argument("--margin-days", type=int, default=7)
    r.add_argument("--no-record", action="store_true", help="do not add deadline alerts to the requests' timelines")
    r.set_defaults(fn=_audit_run)
    d = au.add_parser("disclosure", help="categories of one person's data shared per category of third party")
    d.add_argument("--ticket", required=True, help="the privacy team's reference (names the report; no personal data)")
    d.add_argument("--email")
    d.add_argument("--phone")
    d.add_argument("--country", help="two-letter country of the phone number")
    d.add_argument("--months", type=int, default=12)
    d.add_argument("--day", help="report up to this date (default today)")
    d.add_argument("--shop", default=DEFAULT_SHOP)
    d.add_argument("--ledger", default=DEFAULT_LEDGER)
    d.add_argument("--reports", type=Path)
    d.set_defaults(fn=_audit_disclosure)
    m = au.add_parser("data-map", help="the register-wide record of processing as CSV and HTML")
    m.add_argument("--out", type=Path, help="folder (default <reports>/audit)")
    m.set_defaults(fn=_audit_data_map)
    a = au.add_parser("accept-column", help="a reviewed source column is no longer reported as schema drift")
    a.add_argument("column", help="table.column")
    a.add_argument("--by", required=True, help="who reviewed it")
    a.add_argument("--reason", required=True)
    a.add_argument("--ledger", default=DEFAULT_LEDGER)
    a.set_defaults(fn=_audit_accept_column)
    s = au.add_parser("screenshot", help="render a report in headless Chromium, check its charts, save a PNG")
    s.add_argument("html", type=Path)
    s.add_argument("png", type=Path)
    s.add_argument("--width", type=int, default=1240)
    s.add_argument("--height", type=int, default=2400)
    s.set_defaults(fn=_audit_screenshot)


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

    _erasure_parser(sub)
    _audit_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
