"""daqflow's Redis transport on a real redis-server: kombu's, keeping one client per channel."""
from concurrent.futures import ThreadPoolExecutor

import pytest
from kombu import Connection, Exchange, Queue

from pipelines.orchestration.broker import Transport
from tests.support.services import RedisHandle

# What it checks does not depend on the database: .ci/run's first pass only.
pytestmark = pytest.mark.database_agnostic


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    redis = RedisHandle(tmp_path_factory.mktemp("redis"))
    try:
        yield redis.url
    finally:
        redis.stop()


def test_a_channel_builds_its_client_once_and_anew_for_a_new_pool(redis_url):
    with Connection(redis_url, transport=Transport) as connection:
        channel = connection.channel()
        client = channel._create_client()
        assert channel._create_client() is client
        channel._disconnect_pools()  # as after a fork: a new pool, so a new client
        assert channel._create_client() is not client
        assert channel._create_client().ping()
        channel.close()


def test_messages_published_by_many_threads_at_once_arrive_and_are_acknowledged(redis_url):
    # Step threads publish on connections of their own (as from Celery's producer pool) and
    # acknowledge their messages through the one channel that received them, many more at
    # once than its pool has connections (kombu's own pool raised MaxConnectionsError).
    queue = Queue("steps", Exchange("steps", type="direct"), routing_key="steps")

    def publish(i):
        with Connection(redis_url, transport=Transport) as connection:
            connection.Producer(serializer="json").publish(
                {"step": i}, exchange=queue.exchange, routing_key="steps", declare=[queue])

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(publish, range(200)))
    with Connection(redis_url, transport=Transport) as connection:
        received = []
        with connection.Consumer(queue, accept=["json"],
                                 callbacks=[lambda body, message: received.append(message)]):
            while len(received) < 200:
                connection.drain_events(timeout=5)
        # Unacknowledged, each delivered message is kept for redelivery (acks late).
        client = connection.default_channel._create_client()
        assert client.hlen("unacked") == 200
        with ThreadPoolExecutor(64) as pool:
            list(pool.map(lambda message: message.ack(), received))
        assert sorted(m.payload["step"] for m in received) == list(range(200))
        assert client.hlen("unacked") == 0 and client.zcard("unacked_index") == 0
