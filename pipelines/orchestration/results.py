"""daqflow's Redis result backend: Celery's, minus the result subscriptions.

Celery's Redis backend subscribes the sending process to every task's result
channel so that ``.get()`` can be woken up. daqflow never waits on a result: it
reads them all at once with MGET (``fetch``, for the progress read). Without this, a
web process would collect one subscription per step it dispatched, and re-open
them as results are garbage-collected. And a worker that sends the next stage's
chord would register every member's result as "pending" (for a ``.get()`` that
never comes) and keep it for the life of the process: hundreds of objects per
workflow, the control workers' memory growing by megabytes per start/stop cycle.
"""
from celery.backends.redis import RedisBackend
from redis.exceptions import RedisError

from pipelines.orchestration.app import app


class RunControlRedisBackend(RedisBackend):
    """Results are stored and chords counted as usual; nobody subscribes."""

    def on_task_call(self, producer, task_id):
        pass

    def add_pending_result(self, result, weak=False, start_drainer=True):
        # Sending a group (GroupResult's barrier, the header's promises) lands here.
        return result

    def add_pending_results(self, results, weak=False):
        return list(results)

    def remove_pending_result(self, result):
        return result


def forget(task_ids: list[str], group_ids: list[str] = ()) -> int:
    """Delete the results of ended steps and callbacks (the database keeps the record).

    Without this every workflow would leave hundreds of keys in Redis until
    ``result_expires``; a soak of start/stop cycles would grow Redis without bound.
    ``group_ids`` are ended stages' groups: each leaves the chord's "done" marker
    (``celery-taskset-meta-<group>.c``, 300 s). Returns how many keys went; a Redis
    that is away only leaves them to expire.
    """
    backend = app.backend
    keys = [backend.get_key_for_task(tid) for tid in task_ids]
    keys += [backend.get_key_for_group(gid, ".c") for gid in group_ids]
    if not keys:
        return 0
    try:
        return backend.client.unlink(*keys)
    except (RedisError, OSError):
        return 0


def fetch(task_ids: list[str], client=None) -> tuple[dict[str, dict], str | None]:
    """Celery result metas for task ids in one MGET; (metas, error if Redis is away)."""
    if not task_ids:
        return {}, None
    backend = app.backend
    client = client or backend.client
    try:
        values = client.mget([backend.get_key_for_task(tid) for tid in task_ids])
    except (RedisError, OSError) as exc:
        return {}, f"live progress is unavailable: Redis does not answer ({exc})"
    metas = {tid: backend.decode(raw) for tid, raw in zip(task_ids, values) if raw is not None}
    return metas, None


def broker_run_id() -> str | None:
    """The broker's Redis ``run_id``, new at every start of the server (None: not answering).

    A Redis restarted without persistence comes back empty: the messages of the
    workflows sent to the one before are gone, and its run id tells them apart.
    """
    try:
        with app.connection_for_write() as connection:
            client = connection.default_channel.client
            return client.info("server").get("run_id")
    except (RedisError, OSError, AttributeError):
        return None


def failure_of(task_id: str | None) -> str | None:
    """The message of a failed task, read back from the result backend (None: not failed)."""
    if not task_id:
        return None
    result = app.AsyncResult(task_id)
    return str(result.result) if result.failed() else None
