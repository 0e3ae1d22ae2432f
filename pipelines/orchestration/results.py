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
from celery import states
from celery.backends.redis import RedisBackend
from celery.exceptions import BackendStoreError
from kombu.utils.encoding import bytes_to_str
from redis.exceptions import RedisError

from pipelines.orchestration.app import app

# Write a task's result unless it already says SUCCESS: Celery's own guard against a
# redelivered task undoing a success, checked and written in one round trip.
_STORE_UNLESS_SUCCEEDED = """
local current = redis.call('GET', KEYS[1])
if current then
  local ok, meta = pcall(cjson.decode, current)
  if ok and type(meta) == 'table' and meta['status'] == 'SUCCESS' then return 0 end
end
if tonumber(ARGV[2]) > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
else
  redis.call('SET', KEYS[1], ARGV[1])
end
return 1
"""


class RunControlRedisBackend(RedisBackend):
    """Results are stored and chords counted as usual; nobody subscribes.

    A result is stored in one round trip: Celery reads it first (GET) and then writes and
    publishes it (SETEX and PUBLISH in a transaction), twice per step (started, then
    done), on every one of hundreds of steps at once.
    """

    _store_script = None

    def _store_result(self, task_id, result, state, traceback=None, request=None, **kwargs):
        meta = self._get_result_meta(result=result, state=state, traceback=traceback,
                                     request=request)
        meta["task_id"] = bytes_to_str(task_id)
        value = self.encode(meta)
        if isinstance(value, str) and len(value) > self._MAX_STR_VALUE_SIZE:
            raise BackendStoreError("value too large for Redis backend", state=state,
                                    task_id=task_id)
        expires = self.failure_expires if state == states.FAILURE else self.expires
        self.ensure(self._store_unless_succeeded,
                    (self.get_key_for_task(task_id), value, expires or 0))
        return result

    def _store_unless_succeeded(self, key, value, expires) -> None:
        if self._store_script is None:
            self._store_script = self.client.register_script(_STORE_UNLESS_SUCCEEDED)
        self._store_script(keys=[key], args=[value, int(expires)])

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
