"""Health samples and alarms with real parts: the simulator's routers write at a known rate
over SSH-checked staging directories, a real SMTP server (aiosmtpd) and an HTTP server on
free loopback ports receive the notifications, sent by a real worker on the notify queue."""
from __future__ import annotations

import json
import os
import re
import threading
import time
from datetime import timedelta
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller
from sqlmodel import select

import models
from models import Alarm, Experiment, RouterSample
from models.columns import utcnow
from pipelines.cli.supervisor import free_port
from pipelines.daq.ecc.states import EccState
from pipelines.runcontrol import accounts, health, launching, tasks, watch
from tests.support.daq import set_all, wait_workflow
from tests.support.processes import stop_process, wait_for
from tests.support.services import start_worker
from tests.support.web import account, web_app

# The simulated routers' known write rate: one 20 000-byte file every 0.25 s.
FILE_BYTES, INTERVAL = 20_000, 0.25
RATE = FILE_BYTES / INTERVAL


class _Mailbox:
    """What the SMTP server received."""

    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd's hook
        self.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content)))
        return "250 OK"


@pytest.fixture
def smtp_server():
    mailbox = _Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, mailbox
    controller.stop()


@pytest.fixture
def webhook_server():
    """An HTTP server taking the webhook's posts; ``server.fail_next`` posts get a 500."""
    received = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if server.fail_next > 0:
                server.fail_next -= 1
                self.send_response(500)
            else:
                received.append(body)
                self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Hook)
    server.fail_next = 0
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server, received
    server.shutdown()
    server.server_close()


@pytest.fixture
def notify_worker(smtp_server, webhook_server, tmp_path, redis_url):
    """A worker on the notify queue, mailing through the test's SMTP server and posting to
    its webhook."""
    controller, _ = smtp_server
    hook, _ = webhook_server
    proc = start_worker(tmp_path / "notify.log", f"notify-{os.getpid()}", concurrency=4,
                        queues="notify", env={
                            "DAQFLOW_SMTP_HOST": "127.0.0.1",
                            "DAQFLOW_SMTP_PORT": str(controller.port),
                            "DAQFLOW_SMTP_STARTTLS": "0",
                            "DAQFLOW_ALARM_WEBHOOK_URL":
                                f"http://127.0.0.1:{hook.server_address[1]}/hooks/daq"})
    yield proc
    stop_process(proc)


def alarms_of(kind: str) -> list[Alarm]:
    with models.session() as s:
        return s.exec(select(Alarm).where(Alarm.kind == kind).order_by(Alarm.id)).all()


@pytest.mark.database_agnostic
def test_a_router_that_stops_writing_raises_one_alarm_mailed_posted_acknowledged_cleared(
        running_daq, smtp_server, webhook_server, notify_worker):
    sim = running_daq
    _, mailbox = smtp_server
    _, posted = webhook_server
    with models.session() as s:
        experiment = s.exec(select(Experiment).where(Experiment.active == True)).one()  # noqa: E712
        experiment.alarm_settings = {"rate_min_mb_per_s": 0.001, "rate_delay_seconds": 2.0,
                                     "disk_free_min_gb": 0, "email": ["shift@lab.example"],
                                     "email_per_kind": {"rate_low": ["daq-expert@lab.example"]}}
    sim.router_writes(files_per_run=10_000, interval=INTERVAL, file_bytes=FILE_BYTES)
    set_all(sim, EccState.READY)
    assert wait_workflow(launching.launch("start_run", title="rates"))["state"] == "succeeded"

    # The measured rate is the simulator's: two samples 3 s apart (the measuring window; the
    # simulator writes whole files, so one file more or less is 6.7 kB/s).
    tasks.check_routers()
    time.sleep(3.0)
    tasks.check_routers()
    assert _latest_rate("router-3") == pytest.approx(RATE, rel=0.15)

    # router-3 stops writing while the run goes on: after the delay, one alarm, one message.
    sim.router_writing("router-3", False)
    wait_for(lambda: tasks.check_routers() and alarms_of("rate_low"), timeout=15,
             message="the rate alarm")
    for _ in range(3):  # more beat ticks: still one alarm
        tasks.check_routers()
    [alarm] = alarms_of("rate_low")
    assert alarm.subject == "router-3" and "run 0 is going" in alarm.message
    wait_for(lambda: mailbox.messages and posted, timeout=20, message="the mail and the post")
    recipients, mail = mailbox.messages[0]
    assert sorted(recipients) == ["daq-expert@lab.example", "shift@lab.example"]
    assert "rate_low" in mail["Subject"] and "router-3" in mail.get_payload()
    assert "router-3" in posted[0]["text"] and "rate_low" in posted[0]["text"]
    wait_for(lambda: alarms_of("rate_low")[0].notified_at, timeout=10, message="notified_at")
    # A redelivered notification (a worker restarted mid-task) sends nothing again.
    assert tasks.notify_alarm.apply(args=[alarm.id]).get()["sent"] is False
    # Nor does one sent for an earlier alarm whose id this one took (a retry that waited
    # through the test before this one, which had deleted its alarm, did send it).
    notified_at = alarms_of("rate_low")[0].notified_at
    with models.session() as s:
        s.get(Alarm, alarm.id).notified_at = None
    earlier = (alarm.raised_at - timedelta(minutes=5)).isoformat()
    assert tasks.notify_alarm.apply(args=[alarm.id, False, earlier]).get()["sent"] is False
    with models.session() as s:
        s.get(Alarm, alarm.id).notified_at = notified_at
    tasks.check_routers()
    assert len([m for m in mailbox.messages if "rate_low" in m[1]["Subject"]]) == 1
    assert len(posted) == 1

    # Every page shows it; writing again clears it, and it stays until acknowledged.
    account("robot", "operator")
    token = {"Authorization": f"Bearer {accounts.issue_token('robot')}"}
    client = web_app().test_client()
    banner = client.get("/alarms/banner", headers=token).get_data(as_text=True)
    assert f'data-newest="{alarm.id}"' in banner and "router-3" in banner
    sim.router_writing("router-3", True)
    wait_for(lambda: tasks.check_routers() and alarms_of("rate_low")[0].cleared_at,
             timeout=15, message="the alarm to clear")
    active = client.get("/api/alarms", headers=token).get_json()["active"]
    assert [a["id"] for a in active] == [alarm.id]  # cleared, not yet acknowledged
    acked = client.post(f"/api/alarms/{alarm.id}/ack", headers=token)
    assert acked.status_code == 200 and acked.get_json()["acked_by"] == "robot"
    assert client.get("/api/alarms", headers=token).get_json()["active"] == []
    assert client.post(f"/api/alarms/{alarm.id}/ack", headers=token).status_code == 409
    series = client.get("/api/health/routers", headers=token).get_json()
    assert len(series["router-3"]) >= 4 and series["router-3"][-1]["free_bytes"] > 0
    assert wait_workflow(launching.launch("stop_run"), timeout=60)["state"] == "succeeded"
    # The run page plots each router's rate over the whole run.
    page = client.get("/runs/0", headers=token).get_data(as_text=True)
    assert 'aria-label="router-3: write rate over run 0"' in page


def _latest_rate(router: str) -> float | None:
    with models.session() as s:
        sample = s.exec(select(RouterSample).where(RouterSample.router == router)
                        .order_by(RouterSample.id.desc())).first()
    return sample.rate if sample else None


def test_a_data_router_process_that_dies_raises_and_clears_its_alarms(running_daq):
    sim = running_daq
    sim.process("dataRouter", False)
    try:
        wait_for(lambda: tasks.check_routers() and alarms_of("process_down"), timeout=15,
                 message="the process alarms")
        assert {a.subject for a in alarms_of("process_down")} == {
            f"router-{i} dataRouter" for i in range(9)}
    finally:
        sim.process("dataRouter", True)
    wait_for(lambda: tasks.check_routers() and all(a.cleared_at for a in
                                                    alarms_of("process_down")),
             timeout=15, message="the process alarms to clear")


@pytest.mark.database_agnostic
def test_an_alarm_that_cannot_be_delivered_says_why_on_the_alarms_page(running_daq, tmp_path):
    closed = free_port()  # nothing listens there
    proc = start_worker(tmp_path / "notify.log", f"notify-bad-{os.getpid()}", concurrency=2,
                        queues="notify", env={
                            "DAQFLOW_SMTP_HOST": "127.0.0.1", "DAQFLOW_SMTP_PORT": str(closed),
                            "DAQFLOW_SMTP_STARTTLS": "0",
                            "DAQFLOW_ALARM_WEBHOOK_URL": f"http://127.0.0.1:{closed}/"})
    try:
        with models.session() as s:
            experiment = s.exec(select(Experiment).where(
                Experiment.active == True)).one()  # noqa: E712
            experiment.alarm_settings = {"email": ["shift@lab.example"]}
        running_daq.fault("ecc-cobo5", "refuse")  # (cobo0 is the simulator's control port)
        watch.refresh_ecc_states()
        tasks.check_routers()
        [alarm] = alarms_of("ecc_offline")
        failed = wait_for(lambda: alarms_of("ecc_offline")[0].notify_error, timeout=20,
                          message="the delivery failure on the alarm")
        assert f"email via 127.0.0.1:{closed}" in failed and "webhook" in failed
        assert alarms_of("ecc_offline")[0].notified_at is None  # not counted as told
        account("robot", "viewer")
        token = {"Authorization": f"Bearer {accounts.issue_token('robot')}"}
        page = web_app().test_client().get("/alarms/", headers=token).get_data(as_text=True)
        assert "not delivered: email via 127.0.0.1" in page
    finally:
        stop_process(proc)


def test_a_staging_disk_that_fills_raises_and_clears_its_alarm(running_daq):
    sim = running_daq
    with models.session() as s:
        experiment = s.exec(select(Experiment).where(Experiment.active == True)).one()  # noqa: E712
        experiment.alarm_settings = {"disk_free_min_gb": 0.02}
        # router-2's staging disk is shared: it may fill 50 MB of it.
        s.exec(select(models.DataRouter).where(models.DataRouter.name == "router-2")) \
            .one().staging_quota_bytes = 50_000_000
    tasks.check_routers()
    assert alarms_of("disk_low") == []
    sim.router_fill("router-2", 40_000_000)  # 10 MB left of its quota
    tasks.check_routers()
    [low] = alarms_of("disk_low")
    assert low.subject == "router-2" and "0.0 GB free on its staging disk, below 0.02 GB" \
        in low.message
    latest = health.latest(health.series(utcnow() - timedelta(minutes=1), router="router-2"))
    assert latest["router-2"]["free_bytes"] == 10_000_000
    sim.router_fill("router-2", 0)
    tasks.check_routers()
    assert alarms_of("disk_low")[0].cleared_at is not None


def test_an_ecc_servers_reachability_and_state_are_sampled_when_they_change(running_daq):
    sim = running_daq
    watch.refresh_ecc_states()  # what beat's ECC watch does first, every 5 s
    watch.refresh_ecc_states()  # nothing changed: nothing more written
    start = utcnow() - timedelta(minutes=1)
    series = health.ecc_series(start)
    assert len(series) == 9 and all(len(points) == 1 for points in series.values())
    assert series["ecc-cobo5"][0]["online"] is True
    sim.fault("ecc-cobo5", "refuse")  # (cobo0 is the simulator's control port)
    watch.refresh_ecc_states()
    sim.clear_faults()
    watch.refresh_ecc_states()
    series = health.ecc_series(start)
    assert [(p["online"], p["state"]) for p in series["ecc-cobo5"]] == [
        (True, "IDLE"), (False, None), (True, "IDLE")]
    assert series["ecc-cobo5"][1]["error"] and len(series["ecc-cobo4"]) == 1
    account("robot", "viewer")
    token = {"Authorization": f"Bearer {accounts.issue_token('robot')}"}
    answer = web_app().test_client().get("/api/health/ecc", headers=token).get_json()
    assert [p["online"] for p in answer["ecc-cobo5"]] == [True, False, True]
    # Retention keeps a server's newest sample, however old: the state that still holds.
    later = utcnow() + timedelta(days=30)
    assert health.forget_old_samples(later) == 2  # ecc-cobo5's two older ones
    assert all(len(points) == 1 for points in health.ecc_series(later).values())
    assert health.ecc_series(later)["ecc-cobo5"][0]["online"] is True


@pytest.mark.database_agnostic
def test_a_notification_one_channel_failed_retries_only_that_channel(
        running_daq, smtp_server, webhook_server, notify_worker):
    _, mailbox = smtp_server
    hook, posted = webhook_server
    hook.fail_next = 1  # the webhook answers 500 once
    with models.session() as s:
        experiment = s.exec(select(Experiment).where(Experiment.active == True)).one()  # noqa: E712
        experiment.alarm_settings = {"email": ["shift@lab.example"]}
    running_daq.fault("ecc-cobo5", "refuse")
    watch.refresh_ecc_states()
    tasks.check_routers()
    [alarm] = alarms_of("ecc_offline")
    wait_for(lambda: alarms_of("ecc_offline")[0].notified_at, timeout=30,
             message="the retried notification")
    assert len(posted) == 1 and hook.fail_next == 0
    assert len(mailbox.messages) == 1  # the email went with the first try, and only then
    assert alarms_of("ecc_offline")[0].notify_error is None


def test_an_alarm_kind_set_to_stop_the_run_stops_it_as_an_audited_stop(running_daq):
    sim = running_daq
    with models.session() as s:
        experiment = s.exec(select(Experiment).where(Experiment.active == True)).one()  # noqa: E712
        experiment.alarm_settings = {"rate_delay_seconds": 1.0, "disk_free_min_gb": 0,
                                     "stop_run_on": ["rate_low"]}
    set_all(sim, EccState.READY)  # the routers write four files each, then nothing
    assert wait_workflow(launching.launch("start_run", title="quiet"))["state"] == "succeeded"
    wait_for(lambda: tasks.check_routers() and alarms_of("rate_low"), timeout=20,
             message="the rate alarm")
    alarm = wait_for(lambda: alarms_of("rate_low")[0].action and alarms_of("rate_low")[0],
                     timeout=5, message="the alarm's action")
    workflow_id = int(re.search(r"stopped run 0 \(workflow (\d+)\)", alarm.action).group(1))
    assert wait_workflow(workflow_id, timeout=60)["state"] == "succeeded"
    with models.session() as s:
        run = s.exec(select(models.Run)).one()
    assert run.stopped_at is not None and run.stopped_by == f"alarm:{alarm.id}"
    assert run.note.startswith(f"stopped by alarm {alarm.id}: router-")


def test_old_health_samples_are_forgotten(running_daq):
    now = utcnow()
    with models.session() as s:
        s.add(RouterSample(router="router-0", at=now - timedelta(days=8), bytes=1))
        s.add(RouterSample(router="router-0", at=now - timedelta(days=6), bytes=2))
    assert health.forget_old_samples(now) >= 1
    with models.session() as s:
        left = s.exec(select(RouterSample.bytes).where(RouterSample.router == "router-0")).all()
    assert 1 not in left and 2 in left


@pytest.mark.database_agnostic
def test_check_nodes_shows_a_data_router_process_stopped_and_back_at_once(running_daq):
    from tests.support.web import operator_client

    def router_cells(html: str) -> list[str]:
        return [cell.split("</td>")[0] for cell in html.split('class="router-online">')[1:]]

    client = operator_client()
    running_daq.process("dataRouter", False)
    try:
        # The answer to the button is the checked state: no waiting for beat's next round.
        stopped = client.post("/actions/check-routers").get_data(as_text=True)
        assert len(router_cells(stopped)) == 9
        assert all("not running" in cell for cell in router_cells(stopped))
    finally:
        running_daq.process("dataRouter", True)
    back = client.post("/actions/check-routers").get_data(as_text=True)
    assert router_cells(back) == ["running"] * 9
