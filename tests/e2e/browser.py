"""Headless Chromium driven over the DevTools protocol (websockets), no Node toolchain.

    with Chromium(profile_dir) as browser:
        page = browser.new_page()
        page.goto("http://127.0.0.1:8080/")
        page.wait_for("document.querySelector('input[name=username]')")
        page.screenshot(path)

Debian's `chromium` (apt-get install chromium), started with the flags this machine needs (no sandbox as
root, no background networking: the network is closed) and a fresh, empty profile.
"""
from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--remote-debugging-port=0", "--window-size=1280,900", "--hide-scrollbars"]


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Page:
    def __init__(self, browser: "Chromium", ws) -> None:
        self.browser, self.ws, self._id = browser, ws, 0
        self.events: list[dict] = []   # DevTools events received while waiting for answers

    def _run(self, coro):
        return self.browser.loop.run_until_complete(coro)

    async def _send(self, method: str, params: dict | None = None, timeout: float = 30) -> dict:
        self._id += 1
        my = self._id
        await self.ws.send(json.dumps({"id": my, "method": method, "params": params or {}}))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"DevTools {method}: no answer in {timeout}s")
            msg = json.loads(await asyncio.wait_for(self.ws.recv(), left))
            if "method" in msg:
                self.events.append(msg)
            if msg.get("id") == my:
                if "error" in msg:
                    raise RuntimeError(f"DevTools {method}: {msg['error']}")
                return msg.get("result", {})

    def send(self, method: str, params: dict | None = None, timeout: float = 30) -> dict:
        return self._run(self._send(method, params, timeout))

    def eval(self, expression: str, timeout: float = 30) -> Any:
        r = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True},
                      timeout)
        if r.get("exceptionDetails"):
            raise RuntimeError(f"JS error: {r['exceptionDetails']}")
        return r.get("result", {}).get("value")

    def goto(self, url: str) -> None:
        self.send("Page.navigate", {"url": url})

    def wait_for(self, expression: str, timeout: float = 60, what: str | None = None) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                value = self.eval(expression)
                if value:
                    return value
            except RuntimeError:
                pass
            time.sleep(0.25)
        raise TimeoutError(f"page: {what or expression} not true after {timeout}s (url {self.eval('location.href')})")

    def text(self) -> str:
        return self.eval("document.body ? document.body.innerText : ''") or ""

    def type_into(self, selector: str, value: str) -> None:
        """Set a React-controlled input's value the way typing does (native setter + input event)."""
        self.eval(f"""(() => {{
            const el = document.querySelector({json.dumps(selector)});
            const setter = Object.getOwnPropertyDescriptor(window.HTMLInputElement.prototype, 'value').set;
            el.focus(); setter.call(el, {json.dumps(value)});
            el.dispatchEvent(new Event('input', {{bubbles: true}}));
            el.dispatchEvent(new Event('change', {{bubbles: true}}));
            return true; }})()""")

    def click_text(self, text: str, selector: str = "button") -> bool:
        return bool(self.eval(f"""(() => {{
            const els = [...document.querySelectorAll({json.dumps(selector)})]
                .filter(e => e.innerText && e.innerText.trim() === {json.dumps(text)} && !e.disabled);
            if (!els.length) return false; els[0].click(); return true; }})()"""))

    def screenshot(self, path: Path, clip: dict | None = None) -> Path:
        params: dict[str, Any] = {"format": "png"}
        if clip:
            params["clip"] = {**clip, "scale": clip.get("scale", 1)}
        data = self.send("Page.captureScreenshot", params)["data"]
        Path(path).write_bytes(base64.b64decode(data))
        return Path(path)


class Chromium:
    def __init__(self, profile_dir: Path, log_path: Path | None = None) -> None:
        self.profile_dir = Path(profile_dir)
        self.log_path = log_path or self.profile_dir.parent / "chromium.log"
        self.proc: subprocess.Popen | None = None
        self.loop = asyncio.new_event_loop()
        self._pages: list[Page] = []

    def __enter__(self) -> "Chromium":
        exe = chromium_path()
        if not exe:
            raise RuntimeError("chromium is not installed (apt-get install chromium)")
        if self.profile_dir.exists():
            shutil.rmtree(self.profile_dir)
        self.profile_dir.mkdir(parents=True)
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([exe, *FLAGS, f"--user-data-dir={self.profile_dir}", "about:blank"],
                                     stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        log.close()
        port_file = self.profile_dir / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not start: {self.log_path.read_text()[-2000:]}")
            time.sleep(0.2)
        self.port = int(port_file.read_text().split()[0])
        return self

    def new_page(self) -> Page:
        import urllib.request

        import websockets

        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/json/new?about:blank", method="PUT")
        target = json.loads(urllib.request.urlopen(req, timeout=10).read())
        ws = self.loop.run_until_complete(websockets.connect(target["webSocketDebuggerUrl"], max_size=64 * 2**20))
        page = Page(self, ws)
        page.send("Page.enable")
        page.send("Runtime.enable")
        self._pages.append(page)
        return page

    def __exit__(self, *exc) -> None:
        import os
        import signal

        for p in self._pages:
            try:
                self.loop.run_until_complete(p.ws.close())
            except Exception:  # noqa: BLE001
                pass
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=10)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self.loop.close()
