"""daqflow's Redis result backend: Celery's, minus the result subscriptions.

Celery's Redis backend subscribes the sending process to every task's result
channel so that ``.get()`` can be woken up. daqflow never waits on a result: it
reads them all at once with MGET (see ``pipelines.progress``). Without this, a
web process would collect one subscription per step it dispatched, and re-open
them as results are garbage-collected.
"""
from celery.backends.redis import RedisBackend


class RunControlRedisBackend(RedisBackend):
    """Results are stored and chords counted as usual; nobody subscribes."""

    def on_task_call(self, producer, task_id):
        pass

    def remove_pending_result(self, result):
        return result
