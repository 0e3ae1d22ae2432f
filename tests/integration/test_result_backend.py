"""daqflow's result backend on a real redis-server: what the progress read and chords rely on."""
from concurrent.futures import ThreadPoolExecutor

import pytest
from celery import Celery, states

from pipelines.orchestration.results import RunControlRedisBackend
from tests.support.services import RedisHandle


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    # An app of the test's own: daqflow's app would keep this Redis's URL in its settings
    # for the rest of the session's tests, after this Redis is gone.
    redis = RedisHandle(tmp_path_factory.mktemp("redis"))
    own_app = Celery("result-backend-test", set_as_current=False)
    own_app.conf.update(result_serializer="json", accept_content=["json"], result_expires=3600)
    try:
        yield RunControlRedisBackend(app=own_app, url=redis.url)
    finally:
        redis.stop()


def test_a_result_is_stored_with_its_expiry_and_read_back(backend):
    backend.store_result("t-1", None, states.STARTED)
    assert backend.get_task_meta("t-1")["status"] == states.STARTED
    backend.store_result("t-1", {"server": "ecc-cobo0", "sent": True}, states.SUCCESS)
    meta = backend.get_task_meta("t-1")
    assert meta["status"] == states.SUCCESS and meta["result"]["server"] == "ecc-cobo0"
    assert 0 < backend.client.ttl(backend.get_key_for_task("t-1")) <= backend.expires


def test_a_redelivered_task_does_not_undo_a_success(backend):
    # A worker lost after storing SUCCESS but before its ack: the message runs again.
    backend.store_result("t-2", {"state": "READY"}, states.SUCCESS)
    backend.store_result("t-2", None, states.STARTED)
    backend.store_result("t-2", {"elapsed": 0.5}, "PROGRESS")
    meta = backend.get_task_meta("t-2")
    assert meta["status"] == states.SUCCESS and meta["result"] == {"state": "READY"}


def test_a_failure_replaces_a_started_state_and_nothing_is_published(backend):
    listener = backend.client.pubsub()
    listener.psubscribe("celery-task-meta-*")
    listener.get_message(timeout=1)  # the subscription's confirmation
    backend.store_result("t-3", None, states.STARTED)
    backend.mark_as_failure("t-3", RuntimeError("ECC server ecc-cobo3: Start failed"))
    meta = backend.get_task_meta("t-3")
    assert meta["status"] == states.FAILURE and "Start failed" in str(meta["result"])
    # Nobody waits on a result: storing one publishes nothing.
    assert listener.get_message(timeout=0.2) is None
    listener.close()


def test_threads_storing_at_once_through_one_backend_all_land(backend):
    # A worker's step threads share its one backend (result_backend_thread_safe): a stage's
    # hundreds of steps store STARTED, then SUCCESS, at the same moment through it.
    def store(i):
        backend.store_result(f"t-many-{i}", None, states.STARTED)
        backend.store_result(f"t-many-{i}", {"step": i}, states.SUCCESS)

    with ThreadPoolExecutor(max_workers=64) as pool:
        list(pool.map(store, range(512)))
    metas = [backend.get_task_meta(f"t-many-{i}") for i in range(512)]
    assert [(m["status"], m["result"]) for m in metas] == [
        (states.SUCCESS, {"step": i}) for i in range(512)]
