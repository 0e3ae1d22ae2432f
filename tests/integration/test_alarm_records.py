"""Alarms against a real database: raised once per condition (the database refuses a second
open one), the CLI lists and acknowledges them (audited), a viewer may not acknowledge."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from sqlalchemy.exc import IntegrityError
from sqlmodel import delete, select

import models
from models import Alarm, AuditEntry
from models.columns import utcnow
from pipelines.cli import main
from pipelines.runcontrol import accounts
from tests.support.web import account, log_in, web_app


@pytest.fixture
def alarm_id():
    with models.session() as s:
        s.exec(delete(AuditEntry))
        s.exec(delete(Alarm))
        alarm = Alarm(kind="disk_low", subject="router-2", message="router-2: 3.1 GB free")
        s.add(alarm)
        s.flush()
        return alarm.id


def test_one_open_alarm_per_condition_and_a_new_one_after_it_cleared(alarm_id):
    with pytest.raises(IntegrityError):
        with models.session() as s:
            s.add(Alarm(kind="disk_low", subject="router-2", message="again"))
    with models.session() as s:
        s.get(Alarm, alarm_id).cleared_at = utcnow()
    with models.session() as s:
        s.add(Alarm(kind="disk_low", subject="router-2", message="full again"))
    with models.session() as s:
        assert len(s.exec(select(Alarm)).all()) == 2


def test_the_alarms_command_lists_and_acknowledges(alarm_id):
    runner = CliRunner()
    listed = runner.invoke(main, ["alarms"])
    assert listed.exit_code == 0 and "router-2: 3.1 GB free (holds)" in listed.output
    assert json.loads(runner.invoke(main, ["alarms", "--json"]).output)["active"][0]["id"] == \
        alarm_id
    acked = runner.invoke(main, ["alarms", "ack", str(alarm_id)])
    assert acked.exit_code == 0, acked.output
    again = runner.invoke(main, ["alarms", "ack", str(alarm_id)])
    assert again.exit_code == 3 and "acknowledged by cli:" in again.output
    assert runner.invoke(main, ["alarms", "ack", "999999"]).exit_code == 2
    with models.session() as s:
        entry = s.exec(select(AuditEntry).where(AuditEntry.action == "alarm_ack")).one()
    assert entry.actor == accounts.local_actor() and entry.detail["alarm"] == alarm_id


def test_viewers_see_alarms_but_do_not_acknowledge_them(alarm_id):
    viewer = log_in(web_app().test_client(), "victor", account("victor", "viewer"))
    assert "router-2: 3.1 GB free" in viewer.get("/alarms/").get_data(as_text=True)
    assert viewer.post(f"/api/alarms/{alarm_id}/ack").status_code == 403
    with models.session() as s:
        assert s.get(Alarm, alarm_id).acked_at is None
