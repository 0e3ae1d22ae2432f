"""Driving one ECC server through one transition until GetState confirms it."""
from __future__ import annotations

import time

from pipelines.daq.ecc.client import EccClient, EccError
from pipelines.daq.ecc.payloads import ConfigId, DataLink
from pipelines.daq.ecc.states import EccState, state_name


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
    return min(max(expected / 20, 0.02), 0.25)


def drive(client: EccClient, operation: str, target: EccState, config: ConfigId,
          links: list[DataLink], deadline_seconds: float, expected_seconds: float,
          on_progress=None, clock=None, sleep=None) -> bool:
    """Take a server through one transition and wait until it is confirmed.

    Idempotent: a server already settled in ``target`` succeeds at once without
    anything being sent (returns False); a server already moving to ``target``
    (a redelivered task) is only watched. Otherwise the operation is sent and
    GetState polled until ``Transition == 0`` and ``State == target``. Returns
    True when the operation was sent. Raises EccError on any failure, including
    the deadline (enforced here: thread pools ignore Celery's soft time limits).
    ``on_progress(elapsed, expected)`` is called after each poll that finds the
    transition still under way (it may raise to let go): one seen done at its first
    poll costs nothing more.
    """
    clock, sleep = clock or time.monotonic, sleep or time.sleep
    report = client.get_state()
    if report.settled and report.state == target:
        return False
    sent = False
    if report.settled or report.transition != target:
        client.transition(operation, config, links)
        sent = True
    # The deadline counts from when the server took the transition on: a worker paused
    # between its first GetState and the operation has not used the server's time.
    started = clock()
    while True:
        elapsed = clock() - started
        if elapsed >= deadline_seconds:
            # The last word before failing: a worker paused past the deadline (a long GC,
            # a loaded host) may have missed the confirmation, not the server its work.
            report = client.get_state()
            if report.settled and report.state == target:
                return sent
            raise EccError(client.name, operation,
                           f"not confirmed within its deadline of {deadline_seconds:g} s "
                           f"(last seen: state {state_name(report.state)}, "
                           f"transition {report.transition})")
        sleep(min(poll_delay(elapsed, expected_seconds), max(deadline_seconds - elapsed, 0.01)))
        report = client.get_state()
        if report.settled:
            if report.state == target:
                return sent
            raise EccError(client.name, operation,
                           f"transition ended in state {state_name(report.state)}, "
                           f"not {target.name}")
        if on_progress:
            on_progress(clock() - started, expected_seconds)
