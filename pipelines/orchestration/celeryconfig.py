"""Celery settings for daqflow. Imported by the app on first use, not at import time."""
from models import settings

broker_url = settings.broker_url()
# On Redis, kombu's Redis transport keeping one client per channel instead of building one
# for every message published, delivered and acknowledged (pipelines.orchestration.broker).
if broker_url.split("://", 1)[0] in ("redis", "rediss"):
    broker_transport = "pipelines.orchestration.broker:Transport"
# Redis results, through daqflow's backend class: it never subscribes to result channels
# (daqflow reads results with MGET and never waits on them).
_backend_class = "pipelines.orchestration.results:RunControlRedisBackend"
result_backend = f"{_backend_class}+{settings.result_backend()}"

# One result backend per process, shared by its threads, not one per thread: daqflow's never
# subscribes (the part of Celery's Redis backend that is not thread-safe) and redis-py's
# connection pool is thread-safe, so hundreds of step threads share a few connections.
result_backend_thread_safe = True

# JSON only: tasks take ids and plain values, and nothing pickled crosses hosts.
task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]

# Results (live progress) are for watching; the database keeps the record. A day is plenty.
result_expires = int(settings.RESULT_EXPIRES.get())

# Acknowledge after the task ran: a worker that dies mid-transition leaves the message
# for another worker, and the transition task is idempotent, so running it again is safe.
task_acks_late = True
# A worker process killed under a task puts the message back instead of acking it.
task_reject_on_worker_lost = True
# Redis redelivers an unacked message after this many seconds; it must exceed the longest
# transition deadline, or a slow but healthy transition would be run twice.
broker_transport_options = {"visibility_timeout": int(settings.VISIBILITY_TIMEOUT.get())}
# Take one message at a time per thread: with acks_late, prefetched messages would wait
# behind a long transition instead of going to an idle worker.
worker_prefetch_multiplier = 1

# ECC transitions wait on the network: they go to the `control` queue, which a worker
# serves with a thread pool of high concurrency. File work goes to its own `files` queue.
task_default_queue = "control"
task_routes = {"daqflow.files.*": {"queue": "files"}, "daqflow.notify.*": {"queue": "notify"}}

# Callbacks report STARTED, which the page shows; a stage's steps do not (nor do they store
# a result): each marks its own row running first thing and records its end, and the
# progress read takes both from the database.
task_track_started = True
# Task events cost three extra messages per step; Flower (and `celery events`) switch them
# on at run time with the enable_events control command when they are watching.
worker_send_task_events = False
task_send_sent_event = False

# A broker that is briefly away at start-up is retried, not fatal.
broker_connection_retry_on_startup = True
# Keep the worker's own logging; daqflow logs through it.
worker_hijack_root_logger = False

# Celery beat watches the DAQ: ECC states (and steps whose worker died) every 5 s, data
# routers (and their health samples) every 10 s; the configs each server offers
# every minute. A check nobody took in its own
# period expires instead of piling up behind a dead worker.
_ecc_every = settings.WATCH_ECC_SECONDS.get()
_routers_every = settings.WATCH_ROUTERS_SECONDS.get()
_configs_every = settings.WATCH_CONFIGS_SECONDS.get()
beat_schedule = {
    "watch-ecc-servers": {"task": "daqflow.watch.ecc", "schedule": _ecc_every,
                          "options": {"expires": _ecc_every}},
    "watch-data-routers": {"task": "daqflow.files.check_routers", "schedule": _routers_every,
                           "options": {"expires": _routers_every}},
    # A run at its planned length is stopped by its ETA timer; this looks as often as the
    # ECC watch in case that timer's worker died, and watches byte limits.
    "watch-run-limits": {"task": "daqflow.watch.runs", "schedule": _ecc_every,
                         "options": {"expires": _ecc_every}},
    # Configs change between runs, not between seconds: a slow rate, and a button.
    "watch-configs": {"task": "daqflow.watch.configs", "schedule": _configs_every,
                      "options": {"expires": _configs_every}},
    # Health samples older than DAQFLOW_HEALTH_RETENTION_DAYS go, once an hour.
    "forget-old-samples": {"task": "daqflow.watch.retention", "schedule": 3600,
                           "options": {"expires": 3600}},
}
