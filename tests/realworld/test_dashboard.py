"""The dashboard in a real browser (issue 12, part 6): headless Chromium (Debian's ``chromium``, driven by
Playwright with ``executable_path``) loads the dashboard of a running ``dnsplane up`` on the demo fleet,
sees the endpoints table, sees a demo load balancer failed through the API turn DOWN and lose its weight
without a reload, sees the plan that took it out on the timeline and its diff, the blast-radius graph of a
services file, pins an endpoint and freezes the automation with the page's own controls and the token
typed in, and saves a screenshot in the test's folder. Skips without chromium, fails instead with
DNSPLANE_REQUIRE_SERVERS=1 (``.ci/run`` installs it)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from tests.realworld.harness import Dnsplane, wait_for
from tests.realworld.test_api import call

TOKEN = "dashboard-t0ken"
LB2_IN_API = 'tr[data-endpoint="api.demo.test. A"] span[data-target="lb-2"]'


def require_chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = "chromium not found (install the Debian package chromium)"
        if os.environ.get("DNSPLANE_REQUIRE_SERVERS") == "1":
            pytest.fail(message + "; DNSPLANE_REQUIRE_SERVERS=1 requires it", pytrace=False)
        pytest.skip(message)
    return path


def test_the_dashboard_shows_a_failure_without_a_reload_and_freezes_from_its_button(tmp_path: Path) -> None:
    chromium = require_chromium()
    from playwright.sync_api import sync_playwright

    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    services = tmp_path / "services.yaml"
    services.write_text("services:\n  api:\n    endpoints: [api.demo.test]\n  shop:\n    depends: {api: hard}\n")
    up = Dnsplane(tmp_path / "demo", None, extra_args=["--api-token-file", str(token_file), "--services",
                                                         str(services)])
    up.start()
    try:
        base = wait_for("the API's address", lambda: (up.instance() or {}).get("api"))
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
            try:
                page = browser.new_page()
                loads: list[str] = []
                page.on("load", lambda p: loads.append(p.url))
                page.goto(base + "/")
                page.wait_for_selector(f'{LB2_IN_API}[data-health="up"]', timeout=30_000)
                assert page.locator("#endpoints tbody tr").count() == 4, "the demo fleet's four endpoints"
                loaded = len(loads)

                status, body = call(base, "POST", "/api/v1/demo/lb-2/fail", token=TOKEN)
                assert status == 200, body
                page.wait_for_selector(f'{LB2_IN_API}[data-health="down"].zero', timeout=30_000)
                assert page.locator(f"{LB2_IN_API}").inner_text() == "lb-2 w=0"
                api_row = 'tr[data-endpoint="api.demo.test. A"]'
                page.wait_for_function(f"document.querySelector('{api_row} td.verifier').textContent === 'right'",
                                       timeout=30_000)
                assert re.fullmatch(r"g\d+ .+ \((enactor-\d|verifier)\)", page.locator(f"{api_row} td.written")
                                    .inner_text()), "the generation written, when and by whom"

                page.wait_for_selector('#lanes circle[data-kind="plan"]', timeout=30_000)
                page.wait_for_selector("#plans li", timeout=30_000)
                page.click("#plans li")  # the newest plan: the one that took lb-2 out
                page.wait_for_selector('#diff [data-diff="api.demo.test. A"]', timeout=30_000)
                assert "lb-2" in page.inner_text('#diff [data-diff="api.demo.test. A"]')
                page.wait_for_selector("#blast:not([hidden])", timeout=30_000)
                assert page.eval_on_selector("#blast", "img => img.naturalWidth") > 0

                page.fill("#token", TOKEN)
                page.fill("#reason", "browser test")
                page.fill("#pin-endpoint", "api.demo.test")
                page.fill("#pin-targets", "lb-1,lb-3")
                page.click("#pin")
                page.wait_for_selector('[data-dial="pin:api.demo.test. A"]', timeout=30_000)
                page.click("#freeze")
                page.wait_for_selector("#frozen", timeout=30_000)
                assert "browser test" in page.inner_text("#frozen")
                assert page.inner_text("#error") == ""
                assert len(loads) == loaded, f"the page reloaded: {loads}"
                page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
            finally:
                browser.close()
        frozen = call(base, "GET", "/api/v1/status")[1]["frozen"]
        assert frozen is not None and frozen["reason"] == "browser test" and frozen["by"] == "api@127.0.0.1"
        assert (tmp_path / "dashboard.png").stat().st_size > 10_000
    finally:
        up.stop()
