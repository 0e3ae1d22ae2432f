"""Unit tests of the ECC payloads, the state machine facts, and driving a transition on a fake clock."""
import pytest

from pipelines.daq.ecc import drive, payloads, states
from pipelines.daq.ecc.client import EccError, StateReport
from pipelines.daq.ecc.payloads import ConfigId, DataLink
from pipelines.daq.ecc.states import EccState


def test_config_id_xml_round_trips_and_escapes():
    config = ConfigId("desc <&> \"x\"", "prep", "conf")
    text = payloads.config_id_xml(config)
    assert text.startswith("<ConfigId>")
    assert '<SubConfigId type="describe">desc &lt;&amp;&gt; "x"</SubConfigId>' in text
    assert payloads.parse_config_ids(text) == [config]


def test_data_link_set_has_one_link_per_source():
    links = [DataLink("CoBo[0]", "r0", "10.0.0.1", 46005, "TCP"),
             DataLink("Mutant[master]", "rm", "10.0.0.2", 46010, "FDT")]
    text = payloads.data_link_set_xml(links)
    assert text.count("<DataLink>") == 2
    assert '<DataSender id="CoBo[0]"/>' in text
    assert 'ipAddress="10.0.0.2" port="46010" type="FDT"' in text
    assert payloads.parse_data_link_set(text) == links


def test_get_config_ids_list_is_parsed():
    text = ("<List><ConfigId><SubConfigId type='describe'>a</SubConfigId>"
            "<SubConfigId type='prepare'>b</SubConfigId><SubConfigId type='configure'>c"
            "</SubConfigId></ConfigId></List>")
    assert payloads.parse_config_ids(text) == [ConfigId("a", "b", "c")]


def test_targets_and_one_step_back():
    assert states.target_state("Configure") == EccState.READY
    assert states.target_state("Undo", EccState.PREPARED) == EccState.DESCRIBED
    assert states.step_back(EccState.RUNNING) == ("Stop", EccState.READY)
    assert states.step_back(EccState.READY) == ("Breakup", EccState.PREPARED)
    assert states.step_back(EccState.DESCRIBED) == ("Undo", EccState.IDLE)
    assert states.step_back(EccState.IDLE) is None


def test_poll_delay_polls_first_at_the_expected_end_then_often():
    assert drive.poll_delay(0.0, 10.0) == 1.0  # progress and aborts are looked at each second
    assert drive.poll_delay(8.5, 10.0) == 1.0  # nothing is asked before it can be done
    assert drive.poll_delay(9.9, 10.0) == pytest.approx(0.1)
    assert drive.poll_delay(10.0, 10.0) == 0.25  # past it: expected / 20, at most 250 ms
    assert drive.poll_delay(1.0, 1.0) == 0.05
    assert drive.poll_delay(0.3, 0.2) == 0.02  # and at least 20 ms


class FakeClient:
    """Scripted GetState answers (unit test of the drive loop only)."""

    name = "fake"

    def __init__(self, states):
        self.states, self.sent = list(states), []

    def get_state(self):
        state, transition = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        return StateReport(state, transition)

    def transition(self, operation, config, links):
        self.sent.append(operation)
        if self.refuse:
            raise EccError(self.name, operation, self.refuse, code=2)

    refuse = None


def _drive(client, deadline=5.0, on_progress=None):
    now = [0.0]

    def sleep(seconds):
        now[0] += seconds

    return drive.drive(client, "Configure", EccState.READY, ConfigId("a", "a", "a"), [],
                       deadline, 1.0, clock=lambda: now[0], sleep=sleep,
                       on_progress=on_progress)


def test_drive_sends_once_and_waits_for_confirmation():
    client = FakeClient([(3, 0), (3, 4), (3, 4), (4, 0)])
    assert _drive(client).sent is True
    assert client.sent == ["Configure"]


def test_progress_is_reported_after_each_poll_that_finds_the_transition_under_way_only():
    reported = []
    slow = FakeClient([(3, 0), (3, 4), (3, 4), (4, 0)])
    driven = _drive(slow, on_progress=lambda elapsed, expected: reported.append(elapsed))
    assert reported == [1.0, 1.05]  # at the expected end (1 s), then expected / 20 later
    # It ended between the last poll that saw it under way and the one that saw it settled.
    assert (driven.seen_moving_after, driven.seen_settled_after) == pytest.approx((1.05, 1.1))
    reported.clear()
    on_time = FakeClient([(3, 0), (4, 0)])  # seen done at its first poll: nothing to report
    driven = _drive(on_time, on_progress=lambda elapsed, expected: reported.append(elapsed))
    assert reported == [] and (driven.seen_moving_after, driven.seen_settled_after) == (None, 1.0)


def test_drive_is_idempotent_when_already_there_or_on_the_way():
    settled = FakeClient([(4, 0)])
    # Nothing sent, nothing timed: a transition only watched did not start at our send.
    assert _drive(settled) == drive.Driven(False) and settled.sent == []
    moving = FakeClient([(3, 4), (4, 0)])
    assert _drive(moving) == drive.Driven(False) and moving.sent == []


def test_drive_fails_at_its_deadline():
    client = FakeClient([(3, 0), (3, 4)])
    try:
        _drive(client, deadline=2.0)
    except EccError as exc:
        assert "deadline of 2 s" in str(exc) and exc.server == "fake"
    else:
        raise AssertionError("no deadline failure")


def test_drive_fails_when_the_transition_ends_elsewhere():
    client = FakeClient([(3, 0), (3, 4), (3, 0)])
    try:
        _drive(client)
    except EccError as exc:
        assert "ended in state PREPARED, not READY" in str(exc)
    else:
        raise AssertionError("no failure")


def test_a_confirmation_that_came_while_the_worker_was_paused_past_the_deadline_counts():
    client = FakeClient([(3, 0), (3, 4), (4, 0)])
    now = [0.0]

    def paused(seconds):  # the worker stopped for ten seconds in its first wait
        now[0] += 10.0

    assert drive.drive(client, "Configure", EccState.READY, ConfigId("a", "a", "a"), [], 5.0,
                       1.0, clock=lambda: now[0], sleep=paused).sent is True
    assert client.sent == ["Configure"]



def test_a_trusted_record_sends_the_operation_without_asking_first():
    client = FakeClient([(4, 0)])  # the only GetState: the one that confirms
    now = [0.0]
    assert drive.drive(client, "Configure", EccState.READY, ConfigId("a", "a", "a"), [], 5.0,
                       1.0, clock=lambda: now[0], sleep=lambda s: None,
                       recorded=EccState.PREPARED).sent is True
    assert client.sent == ["Configure"] and client.states == [(4, 0)]


def _drive_recorded(client, recorded):
    return drive.drive(client, "Configure", EccState.READY, ConfigId("a", "a", "a"), [], 5.0,
                       1.0, clock=lambda: 0.0, sleep=lambda s: None, recorded=recorded).sent


def test_a_refusal_after_a_trusted_record_asks_where_the_server_is():
    done = FakeClient([(4, 0)])
    done.refuse = "Configure needs state PREPARED, server is READY"
    assert _drive_recorded(done, EccState.PREPARED) is False  # done already: not sent by us
    moving = FakeClient([(3, 4), (4, 0)])
    moving.refuse = "a transition to state 4 is under way"
    assert _drive_recorded(moving, EccState.PREPARED) is False and moving.states == [(4, 0)]
    elsewhere = FakeClient([(1, 0)])
    elsewhere.refuse = "Configure needs state PREPARED, server is IDLE"
    with pytest.raises(EccError, match="server is IDLE"):
        _drive_recorded(elsewhere, EccState.PREPARED)


def test_a_record_the_operation_does_not_start_from_is_checked_first():
    client = FakeClient([(4, 0)])  # the record said DESCRIBED; the server is READY
    assert _drive_recorded(client, EccState.DESCRIBED) is False and client.sent == []


def test_what_the_caller_has_just_seen_is_not_asked_again():
    client = FakeClient([(4, 0)])
    assert drive.drive(client, "Configure", EccState.READY, ConfigId("a", "a", "a"), [], 5.0,
                       1.0, clock=lambda: 0.0, sleep=lambda s: None,
                       seen=StateReport(3, 0)).sent is True
    assert client.sent == ["Configure"] and client.states == [(4, 0)]


def test_leads_to_knows_where_each_operation_goes_from_where():
    assert states.leads_to("Start", EccState.READY) == EccState.RUNNING
    assert states.leads_to("Start", EccState.PREPARED) is None
    assert states.leads_to("Undo", EccState.PREPARED) == EccState.DESCRIBED
    assert states.leads_to("Undo", EccState.IDLE) is None
