"""A privacy officer in a real browser (headless Debian Chromium over the DevTools protocol): log in, open
erasure_propagation, open its trigger form and check what the officer sees: every field with its title and
help text, 'all pending' and Dry run on by default, the warning against personal data. Then press Trigger
(a dry run) and check the request the UI sends is the one tests/e2e/test_2 sends through the API.

A screenshot of the form goes to .state/e2e-*/trigger_form.png; with VENDORPRIVACY_UPDATE_SCREENSHOT=1 it
also replaces docs/erasure_trigger_form.png."""
from __future__ import annotations

import json
import os
import shutil

import pytest

from tests.e2e.browser import Chromium, chromium_path
from tests.e2e.conftest import ROOT, timed

DAG = "erasure_propagation"
DOC_SHOT = ROOT / "docs" / "erasure_trigger_form.png"
DIALOG = "[...document.querySelectorAll('[role=dialog]')].find(d => d.innerText.includes('Trigger Dag'))"


@pytest.fixture(scope="module")
def browser(e2e_state):
    if not chromium_path():
        pytest.fail("chromium is not installed: `make e2e` installs it (apt-get install chromium)")
    with Chromium(e2e_state / "chromium-profile", log_path=e2e_state / "chromium.log") as b:
        yield b


@pytest.fixture(scope="module")
def form(browser, stack, api, e2e_state):
    """Logged in, on the DAG page, the trigger form open. Returns (page, visible text)."""
    page = browser.new_page()
    page.send("Network.enable")
    page.send("Emulation.setDeviceMetricsOverride", {"width": 1280, "height": 1500, "deviceScaleFactor": 1,
                                                      "mobile": False})
    with timed("browser: log in, open trigger form"):
        page.goto(f"{stack.url}/dags/{DAG}")
        page.wait_for("!!document.querySelector('input[name=password]')", 60, "the login form")
        page.type_into("input[name=username]", "admin")
        page.type_into("input[name=password]", stack.admin_password())
        page.wait_for("![...document.querySelectorAll('button')].find(b => b.innerText.trim() === 'Sign in').disabled",
                      10, "Sign in enabled")
        assert page.click_text("Sign in")
        page.wait_for("!location.pathname.startsWith('/auth')", 60, "leaving the login page")
        if f"/dags/{DAG}" not in page.eval("location.pathname"):
            page.goto(f"{stack.url}/dags/{DAG}")
        page.wait_for("[...document.querySelectorAll('button')].some(b => b.innerText.trim() === 'Trigger')", 60,
                      "the Trigger button")
        assert page.click_text("Trigger")
        page.wait_for(f"!!{DIALOG} && {DIALOG}.innerText.includes('Warn this many days')", 60,
                      "the trigger form with its parameters")
    text = page.eval(f"{DIALOG}.innerText")
    rect = page.eval("(() => { const r = " + DIALOG + ".getBoundingClientRect();"
                     " return {x: r.x, y: r.y, width: r.width, height: Math.min(r.height, 1500 - r.y)}; })()")
    shot = page.screenshot(e2e_state / "trigger_form.png", clip={**rect, "scale": 0.6})
    if os.environ.get("VENDORPRIVACY_UPDATE_SCREENSHOT") == "1":
        DOC_SHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, DOC_SHOT)
    return page, text


def test_the_form_shows_every_field_with_its_help(form, api):
    _, text = form
    params = api.get(f"/api/v2/dags/{DAG}/details").json()["params"]
    assert len(params) == 6
    for name, p in params.items():
        schema = p.get("schema", {})
        assert schema.get("title") and schema["title"] in text, (name, schema.get("title"))
        assert p.get("description") and p["description"].split(".")[0] in text, name
    for expected in ("Which requests", "Dry run (send nothing)", "Ask for approval before sending",
                     "Wait for the vendors' answers", "never an e-mail address or a name"):
        assert expected in text


def test_the_defaults_are_safe(form):
    page, _ = form
    values = page.eval(f"""(() => {{ const d = {DIALOG}; const out = {{}};
        for (const i of d.querySelectorAll('input[name^=element_]'))
            out[i.name.slice(8)] = i.type === 'checkbox' ? i.checked : i.value;
        return out; }})()""")
    assert values == {"requests": "all pending", "dry_run": True, "require_approval": False,
                      "approval_threshold": "50", "wait_for_answers": True, "alert_margin_days": "7"}, values


def test_pressing_trigger_posts_what_the_api_test_posts(form, api):
    from tests.e2e.test_2_privacy_team import form_conf

    page, _ = form
    before = {r["dag_run_id"] for r in api.runs(DAG)}
    page.events.clear()
    clicked = page.eval(f"""(() => {{ const b = [...{DIALOG}.querySelectorAll('button')]
        .filter(b => b.innerText.trim() === 'Trigger' && !b.disabled); if (!b.length) return false;
        b[b.length - 1].click(); return true; }})()""")
    assert clicked
    import time

    deadline = time.monotonic() + 30
    posts = []
    while not posts and time.monotonic() < deadline:
        page.eval("1")  # pumps DevTools events
        posts = [e["params"]["request"] for e in page.events if e.get("method") == "Network.requestWillBeSent"
                 and e["params"]["request"]["method"] == "POST" and e["params"]["request"]["url"].endswith(f"/dags/{DAG}/dagRuns")]
        time.sleep(0.2)
    assert posts, "the UI sent no POST .../dagRuns"
    body = json.loads(posts[0]["postData"])
    assert body["conf"] == form_conf(api), body          # the form's conf: every param at its default (a dry run)
    assert body["conf"]["dry_run"] is True
    new = None
    while time.monotonic() < deadline + 30 and not new:
        new = [r for r in api.runs(DAG) if r["dag_run_id"] not in before]
        time.sleep(0.5)
    assert new and new[0]["run_type"] == "manual"
    done = api.wait_run(DAG, new[0]["dag_run_id"], timeout=300)
    assert done["state"] == "success"
