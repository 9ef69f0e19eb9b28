"""The demo's report in a real headless Chromium: it renders with no console error and its
plots are on the page. Chromium is driven over the DevTools protocol on a pipe
(``--remote-debugging-pipe``: commands on fd 3, answers on fd 4), so no driver or extra
package is needed. A missing Chromium fails the test with what to install."""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from twinflow.flows.demo import run_demo
from twinflow.flows.report import write_report

pytestmark = pytest.mark.services

#: A guard against a hung browser, not a measurement.
DEADLINE_S = 90.0


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail(
        "the report test needs Chromium: apt-get install chromium (infra/dev test installs it "
        "when it runs as root)"
    )


class Browser:
    """A headless Chromium and one page, spoken to over the DevTools pipe."""

    def __init__(self, profile: Path) -> None:
        to_child, self._w = os.pipe()
        self._r, from_child = os.pipe()

        def fds() -> None:  # the protocol's fixed descriptors in the child
            a = fcntl.fcntl(to_child, fcntl.F_DUPFD, 10)  # out of the way of 3 and 4 first
            b = fcntl.fcntl(from_child, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [
                chromium(),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--remote-debugging-pipe",
                f"--user-data-dir={profile}",
                "about:blank",
            ],
            preexec_fn=fds,
            pass_fds=(3, 4),  # kept open in the child (closing happens after preexec_fn)
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_child)
        os.close(from_child)
        self._next, self._buf = 0, b""
        self.events: list[dict[str, Any]] = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        for domain in ("Runtime", "Log", "Page"):
            self.call(f"{domain}.enable", session=True)

    def call(self, method: str, session: bool = False, **params: Any) -> dict[str, Any]:
        self._next += 1
        msg: dict[str, Any] = {"id": self._next, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        reply = self._until(lambda m: m.get("id") == self._next)
        assert "error" not in reply, f"{method}: {reply['error']}"
        return dict(reply.get("result", {}))

    def wait_event(self, method: str) -> None:
        if not any(e.get("method") == method for e in self.events):
            self._until(lambda m: m.get("method") == method)

    def _until(self, done: Any) -> dict[str, Any]:
        end = time.monotonic() + DEADLINE_S
        while True:
            while b"\0" in self._buf:
                raw, self._buf = self._buf.split(b"\0", 1)
                m = json.loads(raw)
                if "method" in m:
                    self.events.append(m)
                if done(m):
                    return dict(m)
            left = end - time.monotonic()
            assert left > 0, "Chromium did not answer"
            ready, _, _ = select.select([self._r], [], [], left)
            chunk = os.read(self._r, 1 << 20) if ready else b""
            assert chunk or not ready, "Chromium closed the pipe"
            self._buf += chunk

    def open(self, url: str) -> None:
        self.call("Page.navigate", session=True, url=url)
        self.wait_event("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        r = self.call("Runtime.evaluate", session=True, expression=expression, returnByValue=True)
        return r["result"].get("value")

    def problems(self) -> list[str]:
        """Console errors and warnings, uncaught exceptions and failed loads seen so far."""
        out = []
        for e in self.events:
            p = e.get("params", {})
            if e["method"] == "Runtime.exceptionThrown":
                out.append(p["exceptionDetails"].get("text", "exception"))
            elif e["method"] == "Runtime.consoleAPICalled" and p["type"] in ("error", "warning"):
                out.append(f"console.{p['type']}: {p['args']}")
            elif e["method"] == "Log.entryAdded" and p["entry"]["level"] in ("error", "warning"):
                out.append(f"log: {p['entry']['text']}")
        return out

    def close(self) -> None:
        try:
            self.call("Browser.close")
        finally:
            self.proc.wait(30)
            os.close(self._w)
            os.close(self._r)


@pytest.fixture
def browser(tmp_path: Path) -> Any:
    b = Browser(tmp_path / "profile")
    yield b
    b.close()


def test_the_probe_sees_console_errors(browser: Browser, tmp_path: Path) -> None:
    """The check below can fail: a page with a broken script is reported."""
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><title>x</title><script>notAFunction()</script>")
    browser.open(page.as_uri())
    assert any("notAFunction" in json.dumps(e) for e in browser.events)
    assert browser.problems()


def test_demo_report_renders_with_its_plots(browser: Browser, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_demo(twins=6, duration_s=3 * 3600.0, seed=7, out_dir=out, progress=None)
    report = write_report(out)
    browser.open(report.as_uri())
    assert browser.problems() == []
    facts = browser.evaluate(
        """JSON.stringify({
        charts: document.querySelectorAll('svg.chart').length,
        series: document.querySelectorAll('svg path.series').length,
        twins: document.querySelectorAll('section.twin').length,
        headings: [...document.querySelectorAll('h2')].map(h => h.textContent),
        captions: [...document.querySelectorAll('figcaption')].map(c => c.textContent),
        fleetWidth: document.querySelector('svg.chart').getBoundingClientRect().width,
        })"""
    )
    f = json.loads(facts)
    assert f["headings"] == ["Fleet overview", "Evaluation", "Twins"]
    assert f["twins"] == 6 and f["fleetWidth"] > 300
    assert f["series"] > 20
    captions = " ".join(f["captions"])
    for wanted in ("Anomaly score", "Health index", "Remaining useful life", "frequency band"):
        assert wanted in captions
    # open every twin's section: the charts inside lay out too
    browser.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
    drawn = browser.evaluate(
        "[...document.querySelectorAll('svg.chart')]"
        ".filter(s => s.getBoundingClientRect().height > 20).length"
    )
    assert drawn == f["charts"]
    assert browser.problems() == []
