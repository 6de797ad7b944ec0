"""The operations console in a real headless Chromium, against ``tie run`` on loopback.

Driven over the Chrome DevTools protocol (a websocket, with aiohttp's client - no extra packages). Debian's
``chromium`` is installed by the test when missing and ``apt-get`` is usable; under ``CI=true`` a missing
browser fails the test, locally it skips. Every wait is on a condition (a DevTools event, a DOM state or
the bus), never a fixed sleep. Screenshots go to ``$TEST_ARTEFACTS_DIR/console`` (default:
``.local/test-artefacts/console``; ``docs/console/`` holds copies for the README).
"""

from __future__ import annotations

import asyncio
import base64
import getpass
import json
import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from shared.adapters.embedded.sqlite_bus import SqliteBus
from shared.messaging.ports import OutboundMessage
from shared.messaging.topology import SUB_WRITEBACK_FHIR, TOPIC_CLINICAL
from tests.helpers import REPO_ROOT, free_port, host_process, http, tie_cli, wait_for

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

SAMPLE = REPO_ROOT / "samples" / "adt-a01.hl7"
POISON = REPO_ROOT / "samples" / "poison-event.json"
POISON_ID = "console-poison"


A11Y = Path(__file__).with_name("console_a11y")  # package.json + package-lock.json (axe-core, pinned)
TOOLS = REPO_ROOT / ".local" / "tools" / "console-a11y"


def axe_source() -> str:
    """axe-core from the committed lock, installed with ``npm ci`` into .local/tools (once per lock)."""
    script = TOOLS / "node_modules" / "axe-core" / "axe.min.js"
    lock = (A11Y / "package-lock.json").read_text()
    installed = TOOLS / "package-lock.json"
    if not script.exists() or not installed.exists() or installed.read_text() != lock:
        npm = shutil.which("npm")
        if npm is None:
            if os.environ.get("CI") == "true":
                pytest.fail("npm is needed to install axe-core for the accessibility check")
            pytest.skip("npm is not installed (needed for axe-core)")
        TOOLS.mkdir(parents=True, exist_ok=True)
        shutil.copy(A11Y / "package.json", TOOLS / "package.json")
        shutil.copy(A11Y / "package-lock.json", installed)
        done = subprocess.run(
            [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
            cwd=TOOLS,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-2000:]
    return script.read_text()


def chromium() -> str:
    """The system Chromium; installed with apt-get when missing (CI=true: missing is a failure)."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    if shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0:
        for attempt in (["apt-get", "install", "-y", "chromium"], ["apt-get", "update"]):
            subprocess.run(attempt, capture_output=True, timeout=900, check=False)
        subprocess.run(
            ["apt-get", "install", "-y", "chromium"], capture_output=True, timeout=900, check=False
        )
        found = shutil.which("chromium")
        if found:
            return found
    if os.environ.get("CI") == "true":
        pytest.fail("Debian's chromium is not installed and could not be installed")
    pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")


class Page:
    """One browser tab over the DevTools protocol: commands, events, DOM checks, screenshots."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, shots: Path) -> None:
        self.ws = ws
        self.shots = shots
        self._ids = 0
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._events: list[dict[str, Any]] = []
        self._changed = asyncio.Condition()
        self.problems: list[str] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            data = json.loads(msg.data)
            if "id" in data:
                future = self._pending.pop(data["id"], None)
                if future is not None and not future.done():
                    future.set_result(data)
                continue
            method = data.get("method", "")
            params = data.get("params", {})
            if method == "Log.entryAdded" and params["entry"]["level"] in ("error", "warning"):
                self.problems.append(params["entry"].get("text", ""))
            if method == "Runtime.exceptionThrown":
                self.problems.append(json.dumps(params.get("exceptionDetails", {}))[:300])
            async with self._changed:
                self._events.append(data)
                self._changed.notify_all()

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        self._ids += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[self._ids] = future
        await self.ws.send_str(json.dumps({"id": self._ids, "method": method, "params": params}))
        answer = await asyncio.wait_for(future, 30)
        assert "error" not in answer, answer
        return dict(answer.get("result", {}))

    async def _event_after(self, name: str, start: int) -> None:
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: any(e.get("method") == name for e in self._events[start:])), 30
            )

    async def load(self, action: Any) -> None:
        """Run ``action`` (a coroutine) and wait for the page load it causes."""
        start = len(self._events)
        await action
        await self._event_after("Page.loadEventFired", start)

    async def goto(self, url: str) -> None:
        await self.load(self.send("Page.navigate", url=url))

    async def js(self, expression: str) -> Any:
        result = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    async def click(self, selector: str) -> None:
        await self.load(self.js(f"document.querySelector({json.dumps(selector)}).click()"))

    async def until(self, expression: str, timeout: float = 30.0) -> Any:
        """Wait for a DOM condition: re-evaluated after each protocol event or second (no fixed sleep)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            value = await self.js(expression)
            if value:
                return value
            seen = len(self._events)
            async with self._changed:
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait_for(lambda n=seen: len(self._events) > n), 1)
        text = await self.js("document.title + ' | ' + document.body.innerText.slice(0, 400)")
        raise AssertionError(f"never true within {timeout} s: {expression}; page: {text}")

    async def key(self, key: str, code: str, vk: int) -> None:
        for kind in ("keyDown", "keyUp"):
            await self.send("Input.dispatchKeyEvent", type=kind, key=key, code=code, windowsVirtualKeyCode=vk)

    async def html(self) -> str:
        return str(await self.js("document.documentElement.outerHTML"))

    async def screenshot(self, name: str) -> None:
        shot = await self.send("Page.captureScreenshot", format="png")
        (self.shots / f"{name}.png").write_bytes(base64.b64decode(shot["data"]))

    async def axe(self, source: str) -> list[str]:
        """Serious and critical axe-core violations on the current page (``rule: n nodes``)."""
        if not await self.js("typeof window.axe !== 'undefined'"):
            await self.js(source)
        found = await self.js(
            "axe.run(document, {resultTypes: ['violations']}).then(r => r.violations"
            ".filter(v => v.impact === 'serious' || v.impact === 'critical')"
            ".map(v => v.id + ': ' + v.nodes.length + ' node(s) ' + v.nodes[0].target.join(' ')))"
        )
        return [str(v) for v in found]

    async def close(self) -> None:
        self._reader.cancel()
        await self.ws.close()


@asynccontextmanager
async def browser(binary: str, profile: Path, shots: Path) -> AsyncIterator[Page]:
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--disable-background-networking",
            f"--remote-debugging-port={port}",
            "--remote-allow-origins=*",
            f"--user-data-dir={profile}",
            "--window-size=1280,1000",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: _up(port) and http("GET", f"http://127.0.0.1:{port}/json/version").status == 200, 30)
        tabs = http("GET", f"http://127.0.0.1:{port}/json/list").json()
        url = next(t["webSocketDebuggerUrl"] for t in tabs if t["type"] == "page")
        async with aiohttp.ClientSession() as session, session.ws_connect(url, max_msg_size=0) as ws:
            page = Page(ws, shots)
            for domain in ("Page", "Runtime", "Log"):
                await page.send(f"{domain}.enable")
            try:
                yield page
            finally:
                await page.close()
    finally:
        proc.terminate()
        proc.wait(15)


def _up(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def nhs_number_of(sample: bytes) -> str:
    pid = next(line for line in sample.splitlines() if line.startswith(b"PID|"))
    match = re.search(rb"\|(\d{10})\^", pid)
    assert match
    return match.group(1).decode()


def test_console_in_a_real_browser(tmp_path: Path) -> None:
    binary = chromium()
    axe = axe_source()
    shots = Path(os.environ.get("TEST_ARTEFACTS_DIR") or REPO_ROOT / ".local" / "test-artefacts") / "console"
    shots.mkdir(parents=True, exist_ok=True)
    local = tmp_path / "local"
    sample = SAMPLE.read_bytes().replace(b"\r\n", b"\r").replace(b"\n", b"\r")
    nhs = nhs_number_of(sample)
    with host_process(local) as (_proc, base):
        sent = http(
            "POST", f"{base}/hl7v2", body=sample, headers={"Content-Type": "x-application/hl7-v2+er7"}
        )
        assert sent.status == 200, sent.body
        correlation_id = sent.headers["X-Correlation-ID"]

        def stages(cid: str) -> list[str]:
            answer = http("GET", f"{base}/messages/{cid}")
            return [s["stage"] for s in answer.json()["stages"]] if answer.status == 200 else []

        wait_for(lambda: "mapped" in stages(correlation_id), timeout=60)

        bus = SqliteBus(local / "bus.sqlite3")
        try:
            bus.publish(
                TOPIC_CLINICAL,
                [
                    OutboundMessage(
                        body=POISON.read_bytes(),
                        message_id="console-poison-1",
                        session_id=POISON_ID,
                        correlation_id=POISON_ID,
                        content_type="application/cloudevents+json",
                    )
                ],
            )
            [poison] = wait_for(
                lambda: bus.peek(TOPIC_CLINICAL, SUB_WRITEBACK_FHIR, dead_letter=True),
                timeout=120,
                interval=0.2,
            )
        finally:
            bus.close()

        asyncio.run(
            _drive(
                binary, tmp_path / "profile", shots, base, correlation_id, poison.sequence_number, nhs, axe
            )
        )

        assert "replayed" in stages(POISON_ID)
        user = f"local:{getpass.getuser()}"
        found = tie_cli(local, "audit", "search", "--agent", user, "-n", "1000")
        assert found.returncode == 0, found.stderr
        interactions = [json.loads(line)["interaction"] for line in found.stdout.splitlines()]
        assert interactions.count("console-search") == 1
        assert interactions.count("console-journey") == 1
        assert interactions.count("console-dlq-replay") == 1


async def _drive(
    binary: str, profile: Path, shots: Path, base: str, correlation_id: str, sequence: int, nhs: str, axe: str
) -> None:
    console = f"{base}/console"
    seen: list[str] = []
    violations: dict[str, list[str]] = {}
    async with browser(binary, profile, shots) as page:
        # Dashboard: the estate, refreshed by console.js (which therefore runs under the CSP).
        await page.goto(console)
        await page.until("!document.querySelector('#estate .meta-js').hidden")
        dead = int(await page.js("document.querySelector('#tile-deadletters .tile-value').textContent"))
        assert dead >= 1
        summary = await page.js("document.getElementById('traffic-summary').textContent")
        assert re.match(r"[1-9]\d* message\(s\) received in the last hour", summary), summary
        assert await page.js("document.querySelectorAll('#traffic-chart rect.bar').length") == 60
        assert "Local operator." in await page.js("document.querySelector('.banner-local').textContent")
        await page.screenshot("dashboard")
        violations["dashboard"] = await page.axe(axe)
        # Keyboard first: Tab reaches the skip link, Enter moves focus to the main content.
        await page.key("Tab", "Tab", 9)
        assert await page.js("document.activeElement.className") == "skip-link"
        await page.key("Enter", "Enter", 13)
        await page.until("document.activeElement.id === 'main'")
        seen.append(await page.html())

        # Find the message sent over HTTP, by correlation id (posted, not in the address).
        await page.click("nav a[href$='/messages']")
        await page.js(f"document.getElementById('correlation_id').value = {json.dumps(correlation_id)}")
        await page.click("form.search button")
        assert "/messages/" not in await page.js("location.pathname")
        link = f"#results a[href$={json.dumps('/messages/' + correlation_id)}]"
        await page.until(f"document.querySelector({json.dumps(link)}) !== null")
        seen.append(await page.html())
        violations["search-results"] = await page.axe(axe)
        await page.click(link)
        journey = await page.js(
            "Array.from(document.querySelectorAll('table.stages .stage')).map(e => e.textContent)"
        )
        for stage in ("received", "acknowledged", "published", "mapped"):
            assert stage in journey, journey
        await page.screenshot("journey")
        violations["journey"] = await page.axe(axe)
        seen.append(await page.html())

        # Replay the poison event from the page: select, confirm, see it leave the list.
        await page.goto(f"{console}/deadletters")
        value = f"{TOPIC_CLINICAL}|{SUB_WRITEBACK_FHIR}|{sequence}"
        box = f"input[name=letter][value={json.dumps(value)}]"
        await page.until(f"document.querySelector({json.dumps(box)}) !== null")
        await page.js(f"document.querySelector({json.dumps(box)}).click()")
        await page.screenshot("deadletters")
        violations["deadletters"] = await page.axe(axe)
        await page.click("#replay-selected")
        assert "Replay 1 dead letter(s)" in await page.js(
            "document.getElementById('confirm-text').textContent"
        )
        await page.screenshot("confirm-replay")
        violations["confirm-replay"] = await page.axe(axe)
        await page.click("#confirm-replay")
        assert await page.js("document.getElementById('notice').textContent") == (
            "Replayed 1 of 1 selected dead letter(s)."
        )
        assert await page.js(f"document.querySelector({json.dumps(box)})") is None
        seen.append(await page.html())
        violations["replayed"] = await page.axe(axe)

        await page.goto(f"{console}/health")
        assert "healthy" in await page.js("document.getElementById('health-status').textContent")
        violations["health"] = await page.axe(axe)
        seen.append(await page.html())
        assert not [p for p in page.problems if "Content Security Policy" in p or "Refused" in p], (
            page.problems
        )
    assert violations == {name: [] for name in violations}, violations  # axe-core: no serious or critical
    assert len(violations) == 7
    for html in seen:
        assert nhs not in html  # no page renders an NHS number without the content role
