"""daqflow's Celery tasks: thin wrappers that call a DAQ client and record the outcome.

Every task takes ids (never model objects), has a deadline, and fails with a
message an operator can act on. Retries are deliberate: only a database that
was briefly unavailable is retried, and every task is idempotent. They live with
run control, not with the Celery wiring, because what they record is run
control's record; the app loads them by name (``orchestration.app``).
"""
from __future__ import annotations

import time

from celery import Task
from redis.exceptions import RedisError
from sqlalchemy.exc import OperationalError

from models.vocabulary import FilesKind
from pipelines.daq.ecc.client import EccError, client_for
from pipelines.daq.ecc.drive import Driven, drive
from pipelines.daq.ecc.states import EccState, Operation, state_name
from pipelines.daq.nodes import checks
from pipelines.daq.nodes.connection import Node, NodeError
from pipelines.daq.nodes.files import backup_configs as backup_on_node
from pipelines.daq.nodes.files import organize
from pipelines.daq.notify import NotifyError
from pipelines.orchestration.app import app
from pipelines.orchestration.results import failure_of
from pipelines.runcontrol import abort, alarms, configs, health, launching, plans, timed, watch
from pipelines.runcontrol.errors import Aborted, StepFailed
from pipelines.runcontrol.records import files_steps as files_records
from pipelines.runcontrol.records import stages as stage_records
from pipelines.runcontrol.records import steps as step_records
from pipelines.runcontrol.records import workflows as workflow_records

# A briefly locked or unreachable database is worth a few tries, backing off.
DB_RETRY = dict(autoretry_for=(OperationalError,), retry_backoff=1, retry_backoff_max=10,
                max_retries=5, retry_jitter=True)


def failure_message(exc: BaseException) -> str:
    """What the operator reads for a failed step: the ECC's words, or the error's type."""
    if isinstance(exc, (StepFailed, EccError, NodeError)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


class StepTask(Task):
    """A member of a stage: whatever ends it, its step row records how.

    Steps record their failure themselves before raising, because Celery fires
    the chord's errback before ``on_failure`` runs; this hook only catches what
    got past that (a database that stayed away through every retry).
    """

    # No STARTED in Redis: a step's first write marks its row running, and the progress
    # read takes that from the database. It was one more Redis round trip for each of a
    # start's hundreds of steps, all at once.
    track_started = False
    # No result either: the step's row records how it ended (the progress read takes the
    # Celery state of an ended step from it), and the chord is counted all the same (the
    # Redis backend counts a member whether or not its result is stored). Storing it was
    # a Redis round trip (a script) for each step, nobody reading it. A failure is still
    # stored, with its traceback, for whoever looks into it (rare, and not on the way of
    # a start).
    ignore_result = True
    store_errors_even_if_ignored = True

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        step_records.finish_step(args[0], task_id, error=failure_message(exc))


class _ProgressReporter:
    """Publishes a transition's progress as a custom state, at most once a second, and
    stops the transition (Aborted) once its workflow has been aborted."""

    def __init__(self, task: Task, abort_key: str | None = None):
        # The first report after a second: at the start the STARTED state says enough, and
        # hundreds of steps begin at once.
        self.task, self.last, self.abort_key = task, time.monotonic(), abort_key

    def __call__(self, elapsed: float, expected: float) -> None:
        now = time.monotonic()
        if now - self.last >= 1.0:
            self.last = now
            if self.abort_key and abort.is_aborted(self.abort_key):
                raise Aborted("its workflow was aborted")
            try:
                self.task.update_state(state="PROGRESS",
                                       meta={"elapsed": round(elapsed, 3), "expected": expected})
            except (RedisError, OSError):
                pass  # live progress is a courtesy; the transition goes on without Redis


def _perform(task: Task, step_id: int, work):
    """Run a step's work; a failure is recorded on the step before the task raises."""
    try:
        return work()
    except OperationalError:
        raise  # the database: retried (the task is idempotent)
    except Exception as exc:
        message = failure_message(exc)
        step_records.finish_step(step_id, task.request.id, error=message)
        raise StepFailed(message) from None


@app.task(bind=True, base=StepTask, name="daqflow.ecc.transition", **DB_RETRY)
def transition(self, step_id: int) -> dict:
    """Drive one ECC server through one transition and wait for its confirmation."""
    def work():
        order = step_records.begin_transition(step_id, self.request.id,
                                              worker=self.request.hostname,
                                              group_id=self.request.group)
        client = client_for(order.server, order.url)
        report = None
        if order.operation == Operation.STOP:
            # A run's source already below RUNNING (rebooted, powered off) has stopped:
            # sending Stop would only fail, and leave the run recorded as going for ever.
            report = client.get_state()
            if report.settled and report.state < EccState.RUNNING:
                return order, Driven(False), report.state
        try:
            driven = drive(client, order.operation, order.target, order.config, order.links,
                         order.deadline_seconds, order.expected_seconds,
                         on_progress=_ProgressReporter(self, order.abort_key),
                         seen=report, recorded=order.recorded_state)
        except Aborted:
            _record_where_it_stopped(step_id, self.request.id, client)
            raise
        return order, driven, int(order.target)

    order, driven, state = _perform(self, step_id, work)
    note = None if state == order.target else (
        f"already {state_name(state)}, not RUNNING: counted as stopped")
    step_records.finish_transition(step_id, self.request.id, order, state, note=note,
                                   driven=driven)
    return {"server": order.server, "state": state_name(state), "sent": driven.sent,
            "note": note}


def _record_where_it_stopped(step_id: int, task_id: str, client) -> None:
    # What GetState says as the aborted step lets go: settled, or still in transition.
    try:
        report = client.get_state()
    except EccError as exc:
        abort.record_stopped_step(step_id, task_id, None, None, error=str(exc))
    else:
        abort.record_stopped_step(step_id, task_id, report.state, report.transition)


def _files_step(task: Task, step_id: int) -> dict:
    # Connect and command timeouts bound the step (thread pools have no time limit).
    def work():
        order = files_records.begin_files_step(step_id, task.request.id,
                                              worker=task.request.hostname,
                                              group_id=task.request.group)
        with Node(order.access) as node:
            if order.kind == FilesKind.DATA:
                moved = organize(node, order.source_dir, order.experiment, order.run_number)
            else:
                moved = backup_on_node(node, order.source_dir, order.backup_root,
                                       order.experiment, order.run_number, order.config_files)
        return order, moved

    order, moved = _perform(task, step_id, work)
    files_records.finish_files_step(step_id, task.request.id, order, moved)
    return {"target": order.target, "folder": moved.folder, "files": moved.files,
            "bytes": moved.bytes}


@app.task(bind=True, base=StepTask, name="daqflow.files.organize", **DB_RETRY)
def organize_files(self, step_id: int) -> dict:
    """Move one data router's .graw files of the stopped run into its run folder."""
    return _files_step(self, step_id)


@app.task(bind=True, base=StepTask, name="daqflow.files.backup", **DB_RETRY)
def backup_configs(self, step_id: int) -> dict:
    """Copy the run's three .xcfg files into the run's backup folder on an ECC's node."""
    return _files_step(self, step_id)


@app.task(bind=True, name="daqflow.stage.complete", **DB_RETRY)
def complete_stage(self, stage_id: int) -> dict:
    """Chord callback: the stage is done when every member's latest attempt succeeded;
    then the workflow's next stage, or its final callback, goes."""
    outcome = stage_records.complete_stage(stage_id, callback_task_id=self.request.id)
    launching.send_next(outcome["workflow_id"])
    return outcome


@app.task(name="daqflow.stage.failed", **DB_RETRY)
def stage_failed(stage_id: int, callback_task_id: str | None = None) -> None:
    """Errback of a stage's chord callback: mark the stage and its workflow failed."""
    callback_task_id = callback_task_id or stage_records.stage_callback_id(stage_id)
    stage_records.fail_stage(stage_id, callback_error=failure_of(callback_task_id),
                             callback_task_id=callback_task_id)


@app.task(bind=True, name="daqflow.workflow.finish", **DB_RETRY)
def finish_workflow(self, workflow_id: int) -> dict:
    """Final callback: record the run started or stopped, and close the workflow; then a
    started run's timer, or the next run of an automatic restart."""
    outcome = workflow_records.finish_workflow(workflow_id, callback_task_id=self.request.id)
    outcome.update(timed.after_workflow(workflow_id))
    outcome["plan"] = plans.after_workflow(workflow_id)
    return outcome


@app.task(name="daqflow.workflow.failed", **DB_RETRY)
def workflow_failed(workflow_id: int, callback_task_id: str | None = None) -> None:
    """Errback of the final callback: the workflow failed at its very end."""
    callback_task_id = callback_task_id or workflow_records.workflow_callback_id(workflow_id)
    error = failure_of(callback_task_id)
    workflow_records.fail_workflow(workflow_id,
                                   f"final callback failed: {error or 'unknown error'}",
                                   callback_task_id=callback_task_id)


@app.task(name="daqflow.watch.ecc", **DB_RETRY)
def watch_ecc() -> dict:
    """Beat: refresh every idle ECC server's state; fail the workflows a restarted Redis lost;
    mark steps no live worker runs lost."""
    return {"states": watch.refresh_ecc_states(),
            "broker_restarted": watch.sweep_broker_restarts(),
            "lost_steps": watch.sweep_lost_steps()}


@app.task(name="daqflow.run.limit", **DB_RETRY)
def run_limit(run_id: int) -> dict:
    """A run's timer (an ETA task at its planned end): stop it if it is still the run going
    and at its limit; a duplicate or late timer does nothing."""
    return timed.reach_limit(run_id)


@app.task(name="daqflow.run.restart", **DB_RETRY)
def restart_run(run_id: int) -> dict:
    """Start the next run after ``run_id`` stopped at its limit with automatic restart (once)."""
    return timed.restart(run_id)


@app.task(name="daqflow.watch.runs", **DB_RETRY)
def watch_runs() -> dict:
    """Beat: stop the run going if it is at its limit (duration or bytes written): the net
    under the ETA timer, and the only watch of a byte limit; pause a run plan whose
    workflow failed, or advance one nothing moves."""
    return {"limit": timed.sweep(), "plan": plans.sweep()}


@app.task(name="daqflow.watch.configs", **DB_RETRY)
def watch_configs() -> dict:
    """Beat: ask every ECC server which configs it offers (GetConfigIDs)."""
    return configs.read_offered()


# A mail server or webhook that is briefly away gets a few more tries, backing off; each
# failure is on the alarm for the shift to see meanwhile.
NOTIFY_RETRY = dict(autoretry_for=(NotifyError, OperationalError), retry_backoff=5,
                    retry_backoff_max=300, max_retries=6, retry_jitter=True)


@app.task(name="daqflow.notify.alarm", **NOTIFY_RETRY)
def notify_alarm(alarm_id: int, reminder: bool = False, raised_at: str | None = None) -> dict:
    """Email and post one alarm (or its reminder); never twice for the same occasion, never
    for another alarm than the one raised at ``raised_at``."""
    return alarms.notify(alarm_id, reminder, raised_at)


@app.task(name="daqflow.watch.retention", **DB_RETRY)
def forget_old_samples() -> dict:
    """Beat: delete health samples older than DAQFLOW_HEALTH_RETENTION_DAYS."""
    return {"deleted": health.forget_old_samples()}


def _alarm_tick() -> dict:
    """Raise and clear alarms from what the checks found; send their notifications."""
    outcome = alarms.evaluate()
    outcome["stops"] = alarms.act(outcome["raised"])
    for alarm_id in outcome["raised"]:
        notify_alarm.delay(alarm_id, False, outcome["at"])
    for alarm_id in outcome["remind"]:
        notify_alarm.delay(alarm_id, True)
    return outcome


@app.task(name="daqflow.files.check_routers", **DB_RETRY)
def check_routers() -> dict:
    """Beat: check every node's data routers (process, staging, health sample) and ECC server
    processes; then raise and clear alarms."""
    router_statuses, ecc_statuses = checks.check_nodes()
    _alarm_tick()
    return {"routers": [{"router": st.name, "online": st.online, "graw_files": st.graw_files,
                         "error": st.error} for st in router_statuses],
            "ecc_servers": [{"server": st.name, "process_running": st.running,
                             "error": st.error} for st in ecc_statuses]}
