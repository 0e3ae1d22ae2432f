"""The Redis transport daqflow's Celery app uses: kombu's, with its commands' pool reworked.

Outside its event loop, kombu's Redis channel runs commands (storing a delivered message
among the unacknowledged, acknowledging it, publishing) through a pool of at most ten
connections, and for each it built a new redis-py client:

- the pool raised MaxConnectionsError when more threads than that needed a connection
  at once; a worker's step threads acknowledge their own messages, so an acknowledgement
  could fail and leave its message to be delivered again. This pool waits instead.
- redis-py's constructor took 143 µs a time here, three times for every step of a start.
  A redis-py client is safe to share between threads (its pool hands each command a
  connection), so each channel keeps the one it builds.
"""
import redis
from kombu.transport import redis as kombu_redis

# How long a command waits for one of the channel's connections before failing as kombu's
# would have at once: far longer than any burst of acknowledgements takes.
POOL_WAIT_SECONDS = 30


class Channel(kombu_redis.Channel):
    """kombu's Redis channel: a pool that waits for a connection, one kept client."""

    _kept_client = None

    def _get_pool(self, asynchronous=False):
        pool = super()._get_pool(asynchronous=asynchronous)
        if asynchronous:  # the event loop's: one connection, never shared between threads
            return pool
        return redis.BlockingConnectionPool(
            connection_class=pool.connection_class, max_connections=pool.max_connections,
            timeout=POOL_WAIT_SECONDS, **pool.connection_kwargs)

    def _create_client(self, asynchronous=False):
        if asynchronous:
            return super()._create_client(asynchronous=True)
        client = self._kept_client
        # A new pool (after a fork, or a reconnection) gets a new client.
        if client is None or client.connection_pool is not self.pool:
            client = self._kept_client = super()._create_client()
        return client


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with daqflow's channel."""

    Channel = Channel
