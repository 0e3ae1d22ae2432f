"""Driving one ECC server through one transition until GetState confirms it."""
from __future__ import annotations

import time
from dataclasses import dataclass

from pipelines.daq.ecc.client import EccClient, EccError, StateReport
from pipelines.daq.ecc.payloads import ConfigId, DataLink
from pipelines.daq.ecc.states import EccState, leads_to, state_name

# Where a GetState finds a server against the transition's target (see _standing).
DONE, UNDER_WAY = "done", "under way"


@dataclass(frozen=True)
class Driven:
    """How a transition went: whether this call sent the operation and, when it did, what
    GetState saw: seconds from the send to the last poll that found the transition under
    way (None: the first poll found it settled), and to the poll that confirmed it."""

    sent: bool
    seen_moving_after: float | None = None
    seen_settled_after: float | None = None


def poll_delay(elapsed: float, expected: float) -> float:
    """Seconds to wait before the next GetState.

    No poll before the transition's expected end (waits of at most a second, so that
    progress and an abort are seen), short ones after it: hundreds of servers are
    polled at once, and each poll costs both ends CPU (polling from 80 % of the
    expected time on took a start's CPU per source from about 13 to 16 ms). A
    transition that takes its expected time is seen at most max(expected / 20, 20 ms),
    and never more than 250 ms, after its end; one that ends early, at its expected time.
    """
    early = expected - elapsed
    if early > 0:
        return min(early, 1.0)
    return poll_interval(expected)


def poll_interval(expected: float) -> float:
    """Seconds between GetStates once a transition is past its expected time."""
    return min(max(expected / 20, 0.02), 0.25)


def drive(client: EccClient, operation: str, target: EccState, config: ConfigId,
          links: list[DataLink], deadline_seconds: float, expected_seconds: float,
          on_progress=None, clock=None, sleep=None, seen: StateReport | None = None,
          recorded: int | None = None) -> Driven:
    """Take a server through one transition and wait until it is confirmed.

    Idempotent: a server already settled in ``target`` succeeds at once without
    anything being sent (``sent`` False); a server already moving to ``target``
    (a redelivered task) is only watched. Otherwise the operation is sent and
    GetState polled until ``Transition == 0`` and ``State == target``; the returned
    ``Driven`` says when the polls saw it moving and settled. Raises EccError on any
    failure, including the deadline (enforced here: thread pools ignore Celery's soft
    time limits).
    ``on_progress(elapsed, expected)`` is called after each poll that finds the
    transition still under way (it may raise to let go): one seen done at its first
    poll costs nothing more.

    What is known already spares the first GetState: ``seen``, the server's answer the
    caller has just had; or ``recorded``, the state the server was last confirmed settled
    in, from a caller that trusts its record (a step's first delivery). When the operation
    leads from the recorded state to ``target`` it is sent at once, and only a refusal
    asks the server: already in ``target`` counts as done, already on its way there is
    watched, anything else fails with the server's own words.
    """
    clock, sleep = clock or time.monotonic, sleep or time.sleep
    if seen is None and recorded is not None and leads_to(operation, recorded) == target:
        sent = _send_unless_done(client, operation, target, config, links)
        if sent is None:
            return Driven(False)
    else:
        standing = _standing(seen or client.get_state(), target)
        if standing == DONE:
            return Driven(False)
        sent = standing is None
        if sent:
            client.transition(operation, config, links)
    # The deadline counts from when the server took the transition on: a worker paused
    # between its first GetState and the operation has not used the server's time.
    started, moving = clock(), None
    while True:
        elapsed = clock() - started
        if elapsed >= deadline_seconds:
            # The last word before failing: a worker paused past the deadline (a long GC,
            # a loaded host) may have missed the confirmation, not the server its work.
            report = client.get_state()
            if report.settled and report.state == target:
                return _driven(sent, moving, clock() - started)
            raise EccError(client.name, operation,
                           f"not confirmed within its deadline of {deadline_seconds:g} s "
                           f"(last seen: state {state_name(report.state)}, "
                           f"transition {report.transition})")
        sleep(min(poll_delay(elapsed, expected_seconds), max(deadline_seconds - elapsed, 0.01)))
        report = client.get_state()
        if report.settled:
            if report.state == target:
                return _driven(sent, moving, clock() - started)
            raise EccError(client.name, operation,
                           f"transition ended in state {state_name(report.state)}, "
                           f"not {target.name}")
        moving = clock() - started
        if on_progress:
            on_progress(moving, expected_seconds)


def _driven(sent: bool, moving: float | None, settled: float) -> Driven:
    # A transition only watched (a redelivery) was not timed from its start.
    return Driven(True, moving, settled) if sent else Driven(False)


def _send_unless_done(client: EccClient, operation: str, target: EccState, config: ConfigId,
                      links: list[DataLink]) -> bool | None:
    """Send the operation (True); if the server refuses it, ask whether it needs none:
    None when the server is settled in ``target`` already, False when it is on its way."""
    try:
        client.transition(operation, config, links)
        return True
    except EccError as refused:
        if refused.code is None:
            raise  # no answer (the network, a timeout): GetState would tell nothing new
        standing = _standing(client.get_state(), target)
        if standing is None:
            raise
        return None if standing == DONE else False


def _standing(report: StateReport, target: EccState) -> str | None:
    """DONE when the server is settled in ``target``, UNDER_WAY when it is in transition
    to it, None when the operation is still to be sent."""
    if report.settled:
        return DONE if report.state == target else None
    return UNDER_WAY if report.transition == target else None
