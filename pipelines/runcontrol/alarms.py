"""Alarms: conditions read from the record (ECC servers, node checks, health samples,
workflows), raised once when they start to hold, cleared when they stop, active until
cleared and acknowledged; every change kept. Beat evaluates them after each node check
and sends one notification per alarm, and reminders while nobody acknowledges it.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlmodel import or_, select

from models import (
    Alarm,
    DataRouter,
    ECCServer,
    RouterSample,
    Run,
    RunPlan,
    Workflow,
    session,
    settings,
)
from models.columns import utcnow
from models.daq import active_experiment
from models.vocabulary import (
    ACTIVE_STATES,
    AlarmKind,
    PlanState,
    WorkflowKind,
    WorkflowState,
)
from pipelines.daq import notify as notify_client
from pipelines.runcontrol import accounts, timed
from pipelines.runcontrol.errors import NotFound, Refused
from pipelines.runcontrol.planning import current_run
from pipelines.topology.schema import AlarmsSpec

MB = 1_000_000
GB = 1_000_000_000


@dataclass(frozen=True)
class Condition:
    """A condition that holds now: what it is about, and what the shift reads."""

    kind: AlarmKind
    subject: str
    message: str


def thresholds(s) -> AlarmsSpec:
    """The active experiment's [alarms] (the defaults without one)."""
    experiment = active_experiment(s)
    return AlarmsSpec.model_validate((experiment.alarm_settings if experiment else None) or {})


def _servers(s) -> list[Condition]:
    out = []
    for server in s.exec(select(ECCServer)).all():
        if server.online is False:
            out.append(Condition(AlarmKind.ECC_OFFLINE, server.name,
                                 f"ECC server {server.name} does not answer: "
                                 f"{server.last_error or 'no answer'}"))
        if server.process_running is False:
            out.append(Condition(AlarmKind.PROCESS_DOWN, f"{server.name} getEccSoapServer",
                                 f"getEccSoapServer of {server.name} is not running on its node"))
    for router in s.exec(select(DataRouter)).all():
        if router.online is False:
            out.append(Condition(AlarmKind.PROCESS_DOWN, f"{router.name} dataRouter",
                                 f"dataRouter of {router.name} is not running on its node"))
    return out


def _routers(s, limits: AlarmsSpec, now) -> list[Condition]:
    out = []
    run = current_run(s)
    since = now - timedelta(seconds=limits.rate_delay_seconds)
    samples = s.exec(select(RouterSample).where(RouterSample.at >= min(
        since, now - timedelta(minutes=5))).order_by(RouterSample.at)).all()
    by_router: dict[str, list[RouterSample]] = {}
    for sample in samples:
        by_router.setdefault(sample.router, []).append(sample)
    for router, series in by_router.items():
        latest = series[-1]
        if latest.free_bytes is not None and latest.free_bytes < limits.disk_free_min_gb * GB:
            out.append(Condition(AlarmKind.DISK_LOW, router,
                                 f"{router}: {latest.free_bytes / GB:.1f} GB free on its staging "
                                 f"disk, below {limits.disk_free_min_gb:g} GB"))
        recent = [st for st in series if st.at >= since]
        # Long enough into the run that a whole delay of samples belongs to it.
        if run is None or run.started_at > since or len(recent) < 2:
            continue
        if all(st.rate is not None and st.rate < limits.rate_min_mb_per_s * MB for st in recent):
            out.append(Condition(AlarmKind.RATE_LOW, router,
                                 f"{router}: run {run.number} is going but it wrote "
                                 f"{recent[-1].rate / MB:.3f} MB/s for "
                                 f"{limits.rate_delay_seconds:g} s"))
    return out


def _workflows(s) -> list[Condition]:
    last = s.exec(select(Workflow).order_by(Workflow.id.desc())).first()
    if last is None or last.state not in (WorkflowState.FAILED, WorkflowState.ABORTED):
        return []
    return [Condition(AlarmKind.WORKFLOW_FAILED, f"workflow {last.id}",
                      f"workflow {last.id} ({last.kind}) {last.state}: {last.error or ''}"[:2000])]


def _runs(s, limits: AlarmsSpec, now) -> list[Condition]:
    out = []
    run = current_run(s)
    end = timed.ends_at(run) if run is not None else None
    if end is not None and now > end + timedelta(seconds=limits.overdue_seconds):
        why = ("its stop at the limit has not finished" if run.limit_reached_at
               else "no stop was started")
        out.append(Condition(AlarmKind.RUN_OVERDUE, f"run {run.number}",
                             f"run {run.number} is still going "
                             f"{int((now - end).total_seconds())} s after its planned "
                             f"length ({why})"))
    last = s.exec(select(Run).order_by(Run.id.desc())).first()
    if last is not None and last.automation_error:
        out.append(Condition(AlarmKind.AUTOMATION_FAILED, f"run {last.number}",
                             f"unattended data taking ended: {last.automation_error}"[:2000]))
    paused = s.exec(select(RunPlan).where(RunPlan.state == PlanState.PAUSED)).first()
    if paused is not None:
        out.append(Condition(AlarmKind.AUTOMATION_FAILED, f"plan {paused.id}",
                             f"run plan {paused.id} ({paused.name}) paused: "
                             f"{paused.error or ''}"[:2000]))
    return out


def conditions(s, now) -> list[Condition]:
    """Every condition that holds now."""
    limits = thresholds(s)
    return _servers(s) + _routers(s, limits, now) + _workflows(s) + _runs(s, limits, now)


def evaluate() -> dict:
    """Raise alarms whose condition started to hold, clear those whose condition stopped;
    returns the ids to notify (new ones, and reminders of unacknowledged ones), and when the
    new ones were raised (``at``, ISO 8601), which their notifications carry."""
    now = utcnow()
    reminder = timedelta(minutes=settings.ALARM_REMINDER_MINUTES.get())
    with session() as s:
        holding = {(c.kind.value, c.subject): c for c in conditions(s, now)}
        open_alarms = s.exec(select(Alarm).where(Alarm.cleared_at == None)).all()  # noqa: E711
        for alarm in open_alarms:
            if (alarm.kind, alarm.subject) not in holding:
                alarm.cleared_at = now
        known = {(alarm.kind, alarm.subject) for alarm in open_alarms}
        remind = [alarm.id for alarm in open_alarms if alarm.acked_at is None
                  and alarm.cleared_at is None and alarm.notified_at is not None
                  and now - alarm.notified_at >= reminder]
    raised = []
    for key, condition in holding.items():
        if key in known:
            continue
        try:
            with session() as s:
                alarm = Alarm(kind=condition.kind.value, subject=condition.subject,
                              message=condition.message, raised_at=now)
                s.add(alarm)
                s.flush()
                raised.append(alarm.id)
        except IntegrityError:
            continue  # another beat tick raised it a moment ago: raised once
    return {"raised": raised, "remind": remind, "at": now.isoformat()}


def act(alarm_ids: list[int]) -> list[int]:
    """Stop the run that is going for each new alarm whose kind is in [alarms] stop_run_on:
    a normal stop workflow, audited as the alarm's; what happened is kept on the alarm.
    Returns the stop workflows launched."""
    from pipelines.runcontrol import launching
    from pipelines.runcontrol.errors import Invalid, Unavailable

    launched = []
    for alarm_id in alarm_ids:
        with session() as s:
            alarm = s.get(Alarm, alarm_id)
            run = current_run(s)
            if alarm is None or run is None or alarm.kind not in thresholds(s).stop_run_on:
                continue
            number, message = run.number, alarm.message
            stopping = s.exec(select(Workflow.id).where(
                Workflow.kind == WorkflowKind.STOP_RUN,
                Workflow.state.in_(ACTIVE_STATES))).first()
            if stopping is not None:  # another alarm of this tick stopped it already
                alarm.action = f"run {number} is being stopped (workflow {stopping})"
                continue
        try:
            workflow_id = launching.launch(
                "stop_run", actor=f"alarm:{alarm_id}",
                note=f"stopped by alarm {alarm_id}: {message}"[:4000])
            outcome = f"stopped run {number} (workflow {workflow_id})"
            launched.append(workflow_id)
        except (Invalid, Refused, Unavailable) as exc:
            outcome = f"could not stop run {number}: {exc}"
        with session() as s:
            s.get(Alarm, alarm_id).action = outcome[:2000]
    return launched


def view(alarm: Alarm) -> dict:
    """An alarm as the page, the API and the CLI show it."""
    def iso(value):
        return value.isoformat() if value else None
    return {"id": alarm.id, "kind": alarm.kind, "subject": alarm.subject,
            "message": alarm.message, "raised_at": iso(alarm.raised_at),
            "cleared_at": iso(alarm.cleared_at), "acked_at": iso(alarm.acked_at),
            "acked_by": alarm.acked_by, "notified_at": iso(alarm.notified_at),
            "notify_error": alarm.notify_error, "action": alarm.action,
            "active": alarm.cleared_at is None or alarm.acked_at is None}


def listing(history: int = 200) -> dict:
    """The active alarms (newest first), and the latest ones of the history."""
    with session() as s:
        active = s.exec(select(Alarm).where(or_(Alarm.cleared_at == None,  # noqa: E711
                                                Alarm.acked_at == None))  # noqa: E711
                        .order_by(Alarm.id.desc())).all()
        recent = s.exec(select(Alarm).order_by(Alarm.id.desc()).limit(history)).all()
        return {"active": [view(a) for a in active], "history": [view(a) for a in recent]}


def acknowledge(alarm_id: int, actor: str | None = None) -> dict:
    """An operator has seen it (audited); it stays active until its condition clears."""
    with session() as s:
        alarm = s.get(Alarm, alarm_id)
        if alarm is None:
            raise NotFound(f"no alarm {alarm_id}")
        if alarm.acked_at is not None:
            raise Refused(f"alarm {alarm_id} was acknowledged by {alarm.acked_by} already")
        who = (actor or accounts.local_actor())[:80]
        alarm.acked_at, alarm.acked_by = utcnow(), who
        accounts.record(s, actor, "alarm_ack", alarm=alarm_id, kind=alarm.kind,
                        subject=alarm.subject)
        return view(alarm)


def recipients(kind: str) -> list[str]:
    """Who is emailed about an alarm of ``kind``: everyone's, and that kind's own."""
    with session() as s:
        limits = thresholds(s)
    return list(dict.fromkeys(limits.email + limits.email_per_kind.get(kind, [])))


def notify(alarm_id: int, reminder: bool = False, raised_at: str | None = None) -> dict:
    """Send one alarm's notification (email, webhook), or its reminder; idempotent: an
    alarm notified already (or reminded within the period) is not sent again. Records
    a failure on the alarm, then raises NotifyError so the task tries again.

    ``raised_at`` (ISO 8601) is when the alarm the message was sent for was raised: a
    message that outlived its alarm (a retry still waiting when the alarm was deleted and
    its id given again, as SQLite does) finds another alarm there, and sends nothing."""
    now = utcnow()
    with session() as s:
        alarm = s.get(Alarm, alarm_id)
        if alarm is None:
            return {"alarm": alarm_id, "sent": False, "why": "no such alarm"}
        if raised_at is not None and alarm.raised_at != datetime.fromisoformat(raised_at):
            return {"alarm": alarm_id, "sent": False,
                    "why": f"not the alarm raised at {raised_at} this message was sent for"}
        period = timedelta(minutes=settings.ALARM_REMINDER_MINUTES.get())
        if not reminder and alarm.notified_at is not None:
            return {"alarm": alarm_id, "sent": False, "why": "notified already"}
        if reminder and (alarm.acked_at or alarm.cleared_at or alarm.notified_at is None
                         or now - alarm.notified_at < period):
            return {"alarm": alarm_id, "sent": False, "why": "no reminder due"}
        kind, message, raised_at = alarm.kind, alarm.message, alarm.raised_at
        done = set((alarm.delivered or "").split(",")) - {""}
    text = (f"{'Reminder, not acknowledged: ' if reminder else ''}[daqflow] {kind}: {message} "
            f"(raised {raised_at:%Y-%m-%d %H:%M:%S} UTC, alarm {alarm_id})")
    to = recipients(kind)
    channels = {"email": (lambda: notify_client.send_email(
                    to, f"[daqflow] {kind}: {message}"[:200], text))
                if notify_client.email_configured() and to else None,
                "webhook": (lambda: notify_client.post_webhook(text))
                if notify_client.webhook_configured() else None}
    errors, sent = [], []
    for channel, send in channels.items():
        if send is None or channel in done:
            continue  # not configured, or delivered by an earlier try of this notification
        try:
            send()
            sent.append(channel)
        except notify_client.NotifyError as exc:
            errors.append(str(exc))
    with session() as s:
        alarm = s.get(Alarm, alarm_id)
        alarm.notify_error = "; ".join(errors)[:2000] or None
        if errors:
            alarm.delivered = ",".join(sorted(done | set(sent))) or None
        else:
            alarm.notified_at, alarm.delivered = now, None
    if errors:
        raise notify_client.NotifyError("; ".join(errors))
    return {"alarm": alarm_id, "sent": sent}
