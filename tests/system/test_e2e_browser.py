"""End to end in a real browser: Debian's Chromium, driven by Playwright, against `daqflow up --demo`.

An operator logs in, takes the DAQ to READY with the buttons, starts a run and
watches the source bars reach 100 % and the run number appear, stops it, starts
again with one simulated source failing, reads its error on the workflow page,
replays the failed step and sees the workflow succeed. Screenshots of the
run-control page mid-start and after the replay go to ``test-artifacts/e2e``.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from pipelines.simulator.topology import simulated_topology
from tests.support import DATABASE, ROOT
from tests.support.processes import stop_process, wait_for

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts" / "e2e"
# As this machine's notes advise: no sandbox as root, no background connections out.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
TIMEOUT_MS = 30_000


@pytest.fixture
def demo(tmp_path):
    """`daqflow up --demo` on free ports (its own SQLite, Redis and simulator); stopped by PID."""
    from pipelines.cli.supervisor import free_port, wait_for_port

    sim_port, web_port = free_port(), free_port()
    topology = tmp_path / "topology.toml"
    topology.write_text(simulated_topology([sim_port] * 9, seconds_per_source=1.5,
                                           transition_timeout=30, experiment="e2e",
                                           staging_root=tmp_path / "staging"))
    # The demo's own Redis and secret key; on the PostgreSQL pass, the session's database
    # (the demo's default otherwise: SQLite in its instance folder).
    dropped = ("REDIS_URL", "DAQFLOW_SECRET_KEY") + (
        () if DATABASE == "postgresql" else ("DAQFLOW_DATABASE_URL",))
    env = {key: value for key, value in os.environ.items() if key not in dropped}
    env["DAQFLOW_INSTANCE"] = str(tmp_path / "instance")
    env["DAQFLOW_WATCH_ECC_SECONDS"] = "1"  # beat's refresh, so the page's own delay shows
    log_path = tmp_path / "up.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "up", "--demo", "--topology", str(topology),
         "--port", str(web_port), "--control-workers", "1"],
        cwd=ROOT, env=env, stdout=open(log_path, "wb"), stderr=subprocess.STDOUT)
    try:
        found = wait_for(lambda: proc.poll() is not None or re.search(
            r"demo operator: name '(\w+)', password '([^']+)'", log_path.read_text()),
            timeout=60, message="up --demo to print the operator's credentials")
        assert proc.poll() is None, log_path.read_text()
        wait_for_port(web_port, timeout=60)
        yield {"url": f"http://127.0.0.1:{web_port}", "name": found.group(1),
               "password": found.group(2), "sim": f"http://127.0.0.1:{sim_port}",
               "log": log_path, "process": proc}
    finally:
        stop_process(proc, grace=20)


@pytest.fixture
def page():
    """A page of a fresh headless Chromium (the distribution's, not a downloaded one)."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 1400})
        context.set_default_timeout(TIMEOUT_MS)
        page = context.new_page()
        # What the Content-Security-Policy blocked, and scripts that failed, as Chromium says.
        page.blocked = []
        page.on("console", lambda message: page.blocked.append(message.text)
                if "Content Security Policy" in message.text else None)
        page.on("pageerror", lambda error: page.blocked.append(str(error)))
        page.dialogs = []  # what the page asked to confirm; the operator says yes
        page.on("dialog", lambda dialog: page.dialogs.append(dialog.message) or dialog.accept())
        yield page
        context.close()
        browser.close()


def simulate_fault(sim_url: str, **fault) -> None:
    request = urllib.request.Request(f"{sim_url}/_sim/faults", data=json.dumps(fault).encode(),
                                     method="POST")
    urllib.request.urlopen(request, timeout=10).read()


def source_bars(page) -> list[int]:
    return [int(v) for v in page.locator("table.sources [role=progressbar]").evaluate_all(
        "bars => bars.map(b => b.getAttribute('aria-valuenow'))")]


def run_workflow(page, button: str, daq_state: str) -> None:
    """Press a run-control button and wait for its workflow to succeed and the DAQ state."""
    page.get_by_role("button", name=button, exact=True).click()
    page.wait_for_function(
        "([state]) => document.querySelector('#workflow-state')?.textContent === 'succeeded'"
        " && document.querySelector('#daq-state')?.textContent === state", arg=[daq_state])


def test_operator_starts_stops_and_replays_a_run_in_chromium(demo, page):
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)  # a start takes seconds, not expect's default 5 s
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.goto(demo["url"] + "/")
    expect(page).to_have_url(re.compile(r"/login"))
    page.get_by_label("Name").fill(demo["name"])
    page.get_by_label("Password").fill(demo["password"])
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#who")).to_have_text("operator (operator)")
    assert len(source_bars(page)) == 9

    # Buttons follow the rules: no run is going, the sources are IDLE.
    for button in ("Stop run", "Start run", "Prepare all", "Configure all", "Reset all"):
        expect(page.get_by_role("button", name=button, exact=True)).to_be_disabled()
    expect(page.get_by_role("button", name="Describe all", exact=True)).to_be_enabled()
    # The server still refuses what a stale page asks for; the refusal shows in the message
    # box, and the next accepted action empties it (daqflow.js, the only script besides
    # htmx the Content-Security-Policy lets run).
    page.evaluate("htmx.ajax('POST', '/actions/stop', {source: '#live', target: '#live', "
                  "swap: 'morph:outerHTML'})")
    expect(page.locator("#message")).to_contain_text("no run is going")

    for button, state in (("Describe all", "DESCRIBED"), ("Prepare all", "PREPARED"),
                          ("Configure all", "READY")):
        run_workflow(page, button, state)
        expect(page.locator("#message")).to_be_empty()

    page.get_by_label("Title").fill("e2e <b>cosmics</b>")
    page.get_by_role("button", name="Start run").click()
    # Mid-start: a source's bar is on its way (and the bars of the last workflow are gone).
    page.wait_for_function("""() => {
        const v = [...document.querySelectorAll('table.sources [role=progressbar]')]
            .map(b => +b.getAttribute('aria-valuenow'));
        return v.some(x => x > 0 && x < 100); }""")
    # The bars' CSS transitions have ended, so the picture shows the values.
    page.wait_for_function("() => document.getAnimations().length === 0")
    page.screenshot(path=str(ARTIFACTS / "run-control-mid-start.png"), full_page=True)
    expect(page.locator("#current-run")).to_contain_text("run 0: e2e <b>cosmics</b> (TEST)")
    assert source_bars(page) == [100] * 9
    expect(page.locator("#workflow-state")).to_have_text("succeeded")

    run_workflow(page, "Stop run", "READY")
    assert page.dialogs == ["Stop the run that is going?"]
    expect(page.locator("#current-run")).to_contain_text("no run is going")

    simulate_fault(demo["sim"], server="ecc-cobo3", kind="error", operation="Start",
                   message="CoBo[3]: simulated AGET 2 failure", times=1)
    page.get_by_label("Title").fill("second")
    page.get_by_role("button", name="Start run").click()
    expect(page.locator("#workflow-state")).to_have_text("failed")
    page.locator("#live h2 a").click()  # the workflow's own page
    expect(page.locator("tr[data-step][data-state=failed]")).to_contain_text(
        "CoBo[3]: simulated AGET 2 failure")
    expect(page.locator("#actions")).to_contain_text("start_run")
    page.get_by_role("button", name="Replay failed steps").click()
    expect(page.locator("#workflow-state")).to_have_text("succeeded")
    expect(page.locator("#actions")).to_contain_text("replay")

    page.get_by_role("link", name="Run control").click()
    expect(page.locator("#current-run")).to_contain_text("run 1: second")
    expect(page.locator("#daq-state")).to_have_text("RUNNING")
    assert source_bars(page) == [100] * 9
    page.screenshot(path=str(ARTIFACTS / "run-control-after-replay.png"), full_page=True)

    # No workflow is active now: the page still polls. The run's clock ticks in the browser,
    # and an ECC server that stops answering shows within two idle poll periods of beat's
    # refresh (1 s here).
    clock = page.locator("#run-clock").text_content()
    page.wait_for_function("([was]) => document.querySelector('#run-clock').textContent !== was",
                           arg=[clock], timeout=5000)
    simulate_fault(demo["sim"], server="ecc-cobo3", kind="refuse")
    expect(page.locator('tr[data-ecc-server="ecc-cobo3"]')).to_contain_text(
        "offline", timeout=(1 + 2 * 3) * 1000 + 2000)
    assert page.blocked == []  # nothing the page uses was refused by its own policy

    # The web process goes away: the page says so within one poll period and greys what it
    # shows instead of passing it off as the DAQ now.
    stop_process(demo["process"], grace=20)
    expect(page.locator("#connection")).to_contain_text("connection lost at", timeout=3000 + 2000)
    expect(page.locator("#live")).to_have_class(re.compile(r"\bstale\b"))
    page.screenshot(path=str(ARTIFACTS / "run-control-connection-lost.png"), full_page=True)
