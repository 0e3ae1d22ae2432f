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
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from pipelines.simulator.topology import simulated_topology
from tests.support import DATABASE, ROOT
from tests.support.daq import COBOS
from tests.support.processes import stop_process, wait_for

# What it checks does not depend on the database: .ci/run's first pass only.
# Longer than the suite's 120 s per test: a browser or hundreds of requests, with fixtures.
pytestmark = [pytest.mark.database_agnostic, pytest.mark.timeout(300)]

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts" / "e2e"
# As this machine's notes advise: no sandbox as root, no background connections out.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
TIMEOUT_MS = 30_000
# A transition of the demos' simulated sources, where nothing is watched mid-way.
QUICK_SECONDS = 0.2
# A second config, which the simulated servers offer beside "cfg".
BEAM_CONFIG = ('\n[[configs]]\nname = "beam"\ndescribe = "beam"\nprepare = "beam"\n'
               'configure = "beam"\n')
# The custom run fields of the demo's experiment: one asked at the start, one at the stop.
RUN_FIELDS = """
[[run_fields]]
name = "gas pressure"
type = "number"
unit = "Torr"

[[run_fields]]
name = "beam on target"
type = "choice"
choices = ["yes", "no"]
asked_at = "stop"
"""


@pytest.fixture
def demo(tmp_path):
    """`daqflow up --demo` on free ports (its own SQLite, Redis and simulator) with nine
    quick sources (0.2 s a transition; the test slows the start it watches); stopped by PID."""
    yield from _up_demo(tmp_path, sources=9)


@pytest.fixture
def quick_demo(tmp_path):
    """The same with three sources, where nothing is watched mid-way."""
    yield from _up_demo(tmp_path, sources=3)


def _up_demo(tmp_path, sources: int):
    from pipelines.cli.supervisor import free_ports, wait_for_port

    sim_port, web_port = free_ports(2)
    topology = tmp_path / "topology.toml"
    topology.write_text(simulated_topology([sim_port] * sources,
                                           seconds_per_source=QUICK_SECONDS,
                                           transition_timeout=30, experiment="e2e",
                                           staging_root=tmp_path / "staging") + RUN_FIELDS
                        + BEAM_CONFIG)
    # The demo's own Redis and secret key; on the PostgreSQL pass, the session's database
    # (the demo's default otherwise: SQLite in its instance folder).
    dropped = ("REDIS_URL", "DAQFLOW_SECRET_KEY") + (
        () if DATABASE == "postgresql" else ("DAQFLOW_DATABASE_URL",))
    env = {key: value for key, value in os.environ.items() if key not in dropped}
    env["DAQFLOW_INSTANCE"] = str(tmp_path / "instance")
    env["DAQFLOW_WATCH_ECC_SECONDS"] = "1"  # beat's refresh, so the page's own delay shows
    env["DAQFLOW_WATCH_ROUTERS_SECONDS"] = "1"  # node checks, health samples and alarms
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
        # What the server sent, for a failure to explain itself (wait_or_explain).
        page.responses = []
        page.on("response", lambda response: page.responses.append(
            (round(time.monotonic(), 2), response.status, urlsplit(response.url).path)))
        page.on("dialog", lambda dialog: page.dialogs.append(dialog.message) or dialog.accept())
        yield page
        context.close()
        browser.close()


def _simulator_post(url: str, payload: dict) -> None:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST")
    urllib.request.urlopen(request, timeout=10).read()


def simulate_fault(sim_url: str, **fault) -> None:
    _simulator_post(f"{sim_url}/_sim/faults", fault)


def simulator_set(sim_url: str, **settings) -> None:
    _simulator_post(f"{sim_url}/_sim/set", settings)


def source_bars(page) -> list[int]:
    return [int(v) for v in page.locator("table.sources [role=progressbar]").evaluate_all(
        "bars => bars.map(b => b.getAttribute('aria-valuenow'))")]


def run_workflow(page, button: str, daq_state: str) -> None:
    """Press a run-control button and wait for its workflow to succeed and the DAQ state."""
    page.get_by_role("button", name=button, exact=True).click()
    page.wait_for_function(
        "([state]) => document.querySelector('#workflow-state')?.textContent === 'succeeded'"
        " && document.querySelector('#daq-state')?.textContent === state", arg=[daq_state])


def wait_or_explain(page, demo, condition: str) -> None:
    """Wait for a condition on the page; if it never holds, fail with what the page was
    sent meanwhile, what its bars showed, and the end of the demo's log."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(condition)
    except PlaywrightTimeout:
        log = demo["log"].read_text(errors="replace").splitlines()[-40:]
        raise AssertionError(
            "the page never showed it; responses (seconds, status, path): "
            f"{page.responses[-40:]}\nbars: {source_bars(page)}, workflow state: "
            f"{page.locator('#workflow-state').all_text_contents()}\nup.log:\n"
            + "\n".join(log)) from None


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
    page.get_by_label("Comment").fill("first light after the gas change")
    page.get_by_label("gas pressure").fill("150")
    # This start's CoBo transitions take 3 s, so that a 1 s poll sees them mid-way even when
    # the machine is busy (a 2 s start went by unseen once in CI); the MuTAnT's stay quick.
    simulator_set(demo["sim"], seconds_per_source=3.0, servers=COBOS)
    page.get_by_role("button", name="Start run").click()
    # Mid-start: a source's bar is on its way (and the bars of the last workflow are gone).
    wait_or_explain(page, demo, """() => {
        const v = [...document.querySelectorAll('table.sources [role=progressbar]')]
            .map(b => +b.getAttribute('aria-valuenow'));
        return v.some(x => x > 0 && x < 100); }""")
    # The bars' CSS transitions have ended, so the picture shows the values.
    page.wait_for_function("() => document.getAnimations().length === 0")
    page.screenshot(path=str(ARTIFACTS / "run-control-mid-start.png"), full_page=True)
    expect(page.locator("#current-run")).to_contain_text("run 0: e2e <b>cosmics</b> (TEST)")
    assert source_bars(page) == [100] * 9
    expect(page.locator("#workflow-state")).to_have_text("succeeded")
    simulator_set(demo["sim"], seconds_per_source=QUICK_SECONDS)

    page.get_by_label("Note").fill("quiet run")
    page.get_by_label("beam on target").select_option("yes")
    run_workflow(page, "Stop run", "READY")
    assert page.dialogs == ["Stop the run that is going?"]
    expect(page.locator("#current-run")).to_contain_text("no run is going")

    # The run log: the run with its comment and fields, in the Runs page and the CSV export;
    # a note edited after the stop shows with its history.
    page.get_by_role("link", name="Runs").click()
    row = page.locator('#runs tr[data-run="0"]')
    expect(row).to_contain_text("first light after the gas change")
    expect(row.locator('td[data-field="gas pressure"]')).to_have_text("150.0")
    expect(row.locator('td[data-field="beam on target"]')).to_have_text("yes")
    exported = page.request.get(demo["url"] + page.locator("#export-csv").get_attribute("href"))
    assert exported.ok and "first light after the gas change" in exported.text()
    assert "gas pressure" in exported.text().splitlines()[0] and ",150.0," in exported.text()
    row.get_by_role("link", name="0").click()
    page.get_by_label("Note").fill("quiet run; trigger rate 40 Hz")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#note-history tr")).to_have_count(3)  # a header and two versions
    expect(page.locator("#note-history")).to_contain_text("quiet run; trigger rate 40 Hz")
    expect(page.locator("#run-note")).to_have_text("quiet run; trigger rate 40 Hz")
    page.screenshot(path=str(ARTIFACTS / "run-page.png"), full_page=True)
    page.get_by_role("link", name="Run control").click()

    simulate_fault(demo["sim"], server="ecc-cobo3", kind="error", operation="Start",
                   message="CoBo[3]: simulated AGET 2 failure", times=1)
    page.get_by_label("Title").fill("second")
    # A planned length: daqflow stops it after an hour and starts the next (auto-restart).
    start_form = page.locator("#start-form")
    start_form.get_by_label("Stop after").fill("1h")
    start_form.get_by_label("auto-restart").check()
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
    # "stops in" counts down the planned hour, with its automatic restart said.
    countdown = page.locator("#run-countdown")
    expect(countdown).to_have_text(re.compile(r"^59:\d\d$"))
    expect(page.locator("#auto-restart")).to_have_text("auto-restart on")
    was = countdown.text_content()
    page.wait_for_function("([was]) => document.querySelector('#run-countdown').textContent "
                           "!== was", arg=[was], timeout=5000)
    checked = page.locator("#ecc-states-ago")
    expect(checked).to_have_text(re.compile(r"^\d+ s ago$"))
    simulate_fault(demo["sim"], server="ecc-cobo3", kind="refuse")
    expect(page.locator('tr[data-ecc-server="ecc-cobo3"]')).to_contain_text(
        "offline", timeout=(1 + 2 * 3) * 1000 + 2000)
    # Beat raises the alarm; the banner every page polls shows it (and a sound plays).
    expect(page.locator("#alarm-banner")).to_contain_text("ECC server ecc-cobo3 does not answer",
                                                          timeout=5000 + 2000 + 2000)
    # Each router's write rate of the last quarter hour, drawn on the server as SVG.
    expect(page.locator('tr[data-router="router-0"] svg.sparkline polyline')).to_have_attribute(
        "points", re.compile(r"^[\d.]+,[\d.]+ "))
    page.screenshot(path=str(ARTIFACTS / "run-control-alarm-and-rates.png"), full_page=True)
    assert page.blocked == []  # nothing the page uses was refused by its own policy

    # The web process goes away: the page says so within one poll period and greys what it
    # shows instead of passing it off as the DAQ now.
    stop_process(demo["process"], grace=20)
    expect(page.locator("#connection")).to_contain_text("connection lost at", timeout=3000 + 2000)
    expect(page.locator("#live")).to_have_class(re.compile(r"\bstale\b"))
    # The page's clocks go on counting from what the server last said.
    expect(checked).to_have_text(re.compile(r"^([3-9]|\d\d+) s ago$"), timeout=8000)
    page.screenshot(path=str(ARTIFACTS / "run-control-connection-lost.png"), full_page=True)


def log_in(page, demo) -> None:
    page.goto(demo["url"] + "/login")
    page.get_by_label("Name").fill(demo["name"])
    page.get_by_label("Password").fill(demo["password"])
    page.get_by_role("button", name="Log in").click()


def test_operator_chooses_a_config_moves_one_server_and_aborts_a_hung_one(quick_demo, page):
    demo = quick_demo
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log_in(page, demo)
    # The configs every server offers, read now; one chosen for every server.
    page.get_by_role("button", name="Read configs").click()
    expect(page.locator("#common-configs")).to_have_text("beam, cfg")
    page.get_by_label("Config for every server").select_option("beam")
    page.get_by_role("button", name="Choose for all").click()
    expect(page.locator("#config-for-all")).to_have_text("beam")
    run_workflow(page, "Describe all", "DESCRIBED")
    page.locator("#live h2 a").click()
    expect(page.locator("#workflow-config")).to_have_text("config beam")
    page.get_by_role("link", name="Run control").click()

    # One server, from its row: back to IDLE alone.
    row = page.locator('tr[data-ecc-server="ecc-cobo0"]')
    row.locator('button[data-server-action="undo"]').click()
    expect(row.locator("td.state")).to_have_text("IDLE")
    expect(page.locator("#workflow-state")).to_have_text("succeeded")

    # It hangs in its Describe: the operator sees whom an abort would cut loose, aborts it.
    simulate_fault(demo["sim"], server="ecc-cobo0", kind="hang", operation="Describe")
    row.locator('button[data-server-action="describe"]').click()
    expect(page.locator("#waiting")).to_contain_text("waiting for ecc-cobo0 (Describe")
    page.get_by_role("button", name="Abort").click()
    expect(page.locator("#workflow-state")).to_have_text("aborted", timeout=2000)
    expect(row.locator("td.state")).to_contain_text("(in transition to DESCRIBED)")
    assert "Abort the active workflow?" in page.dialogs[-1]
    page.screenshot(path=str(ARTIFACTS / "run-control-aborted.png"), full_page=True)
    assert page.blocked == []


@pytest.fixture
def big_daq(redis_url, tmp_path):
    """A 256-source DAQ in the session's database, its servers in mixed states (no
    simulator: nothing refreshes them), served by `daqflow web`; stopped by PID."""
    from sqlmodel import delete, select

    import models
    from models import Account, ECCServer, Experiment, LoginSession
    from pipelines.cli.supervisor import free_port, wait_for_port
    from pipelines.daq.ecc.states import EccState
    from pipelines.topology import loading, schema
    from tests.support.daq import clear_workflow_records
    from tests.support.web import PASSWORD, SECRET_KEY, account

    clear_workflow_records()
    with models.session() as s:
        for table in (LoginSession, Account, Experiment):
            s.exec(delete(table))
    loading.load(schema.parse(simulated_topology([18001] * 256, routers=False)))
    with models.session() as s:
        for i, server in enumerate(s.exec(select(ECCServer).order_by(ECCServer.id)).all()):
            server.state = EccState.PREPARED if i % 40 == 7 else EccState.READY
            if i in (17, 130, 201):
                server.online, server.last_error = False, "connection refused"
    account("shift", "viewer")
    port = free_port()
    env = dict(os.environ, DAQFLOW_SECRET_KEY=SECRET_KEY)
    with open(tmp_path / "web.log", "wb") as log:
        web = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "web", "--port", str(port)],
                               cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, timeout=60)
        yield {"url": f"http://127.0.0.1:{port}", "name": "shift", "password": PASSWORD}
    finally:
        stop_process(web)


def test_a_256_source_daq_is_readable_on_one_screen(big_daq, page):
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(big_daq["url"] + "/login")
    page.get_by_label("Name").fill(big_daq["name"])
    page.get_by_label("Password").fill(big_daq["password"])
    page.get_by_role("button", name="Log in").click()
    cells = page.locator("#source-grid .cell")
    expect(cells).to_have_count(256)
    # The offline sources lead the grid; the counts say how many of each.
    assert cells.evaluate_all("cs => cs.slice(0, 3).map(c => c.className)") == [
        "cell cell-offline cell-failed"] * 3
    expect(page.locator("#source-counts")).to_contain_text("READY 246")
    expect(page.locator("#source-counts")).to_contain_text("PREPARED 7")
    expect(page.locator("#source-counts")).to_contain_text("offline 3")
    expect(page.locator("#source-tables")).not_to_have_attribute("open", "")
    grid = page.locator("#source-grid").bounding_box()
    assert grid["y"] + grid["height"] < 900, "the grid does not fit on one screen"
    page.screenshot(path=str(ARTIFACTS / "run-control-256-sources.png"))


def test_a_run_plan_advances_in_chromium(quick_demo, page):
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log_in(page, quick_demo)
    page.get_by_role("link", name="Run plan").click()
    page.locator("#plan-form textarea").fill(
        'name = "e2e plan"\n[[entries]]\ntitle = "first"\nconfig = "cfg"\nduration = "3s"\n'
        '[[entries]]\ntitle = "second"\nconfig = "cfg"\nduration = "1s"\n')
    page.get_by_role("button", name="Run this plan").click()
    expect(page.locator("#plan-state")).to_have_text("running")
    # The first entry's run counts down on the plan page, then the plan moves on.
    first = page.locator('tr[data-entry="1"]')
    expect(first.locator(".plan-countdown")).to_have_text(re.compile(r"^0:0[0-3]$"))
    page.screenshot(path=str(ARTIFACTS / "run-plan-running.png"), full_page=True)
    expect(page.locator("#plan-state")).to_have_text("done")
    expect(page.locator("tr[data-entry] .entry-state")).to_have_text(["done", "done"])
    expect(page.locator('tr[data-entry="2"]')).to_contain_text("run 1 (cfg)")
    page.screenshot(path=str(ARTIFACTS / "run-plan-done.png"), full_page=True)

    assert page.blocked == []
