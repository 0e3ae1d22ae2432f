"""The processes of one daqflow host, as argument lists: what ``daqflow up`` runs.

They travel inside the package (a wheel has no Procfile). The top-level
``Procfile`` says the same for honcho and foreman users; a test checks that the
two agree, defaults included.
"""
from __future__ import annotations

from pathlib import Path

from models import settings

CELERY_APP = "pipelines.orchestration.app"

# How glibc's allocator serves daqflow's threaded processes over a long shift (see the
# soaks in bench/RECORD.md); an operator's own value of either stands.
ALLOCATOR_ENVIRONMENT = {
    # glibc gives threads malloc arenas of their own, up to eight a core, and the web's and
    # the workers' many threads left memory in them that RSS never gave back (soak, web
    # process: 112 -> 148 MB in 100 cycles; 111 -> 119 with two).
    "MALLOC_ARENA_MAX": "2",
    # Each thread kept a cache of the small blocks it freed, out of the shared arenas, which
    # grew instead: four control workers' RSS crept by 1.6 MB over the last 2.5 minutes of
    # a 100-cycle soak with it, 0.24 without, at no CPU cost the bench could see.
    "GLIBC_TUNABLES": "glibc.malloc.tcache_count=0",
}


# Threads of a control worker when nothing says how many ECC servers there are (the
# Procfile's default too).
UNSIZED_CONTROL_THREADS = 256
# Threads a control worker has beyond its share of a stage's transitions: the stage's
# callback, beat's watch tasks.
SPARE_CONTROL_THREADS = 4
# The fewest threads a sized control worker has: a DAQ of a few servers still leaves room
# for a watch task stuck on an unreachable server.
MIN_CONTROL_THREADS = 16


def control_threads(servers: int, workers: int) -> int:
    """Threads for each of ``workers`` control workers serving ``servers`` ECC servers.

    Enough that a stage's transitions all run at once even with one worker gone (its
    share goes to the others), a few spare, and no more: a thread pool starts a thread
    only when every other is busy, and keeps it, so a pool much larger than the DAQ kept
    adding threads at each new peak of concurrent steps, run after run. Sized, it is full
    within the first runs (bench/RECORD.md, the soaks). No servers known: 256.
    """
    if servers < 1:
        return UNSIZED_CONTROL_THREADS
    share = -(-servers // max(workers - 1, 1))
    return max(share + SPARE_CONTROL_THREADS, MIN_CONTROL_THREADS)


def too_few_threads(servers: int, pools: list[int]) -> str | None:
    """What is wrong when control workers with ``pools`` threads each cannot run a stage of
    ``servers`` transitions at once with one of them gone (all of them, if it is alone);
    None when they can."""
    if not pools or servers < 1:
        return None
    one_gone = sum(pools) - max(pools) if len(pools) > 1 else sum(pools)
    if one_gone >= servers:
        return None
    return (f"{len(pools)} control worker(s) of {', '.join(map(str, pools))} threads run "
            f"{one_gone} transitions at once{' with one gone' if len(pools) > 1 else ''}, "
            f"for {servers} ECC servers: a stage would run in waves. Set "
            f"DAQFLOW_CONTROL_CONCURRENCY to {control_threads(servers, len(pools))}, or "
            "leave it unset and restart `daqflow up`: it sizes them to the topology")


def _worker(name: str, concurrency: int, queues: str | None = None) -> list[str]:
    # ECC transitions and SSH sessions wait on the network: thread pools, many threads.
    return ["celery", "-A", CELERY_APP, "worker", "--pool", "threads", "--concurrency",
            str(concurrency), "--queues", queues or name, "--hostname", f"{name}@%h",
            "--loglevel", "INFO"]


def processes(instance: Path, topology: Path | None, port: int | None = None,
              threads: int | None = None) -> dict[str, list[str]]:
    """Every process by name, in start order: web, control, files, simulator, beat, flower.

    ``simulator`` is for the demo and ``flower`` on request; ``daqflow up`` drops them
    otherwise. ``threads``: each control worker's, when the operator has not set them
    (256 when neither says). Settings are read now, from the environment.
    """
    return {
        "web": ["daqflow", "web", "--host", settings.WEB_HOST.get(), "--port",
                str(port or settings.WEB_PORT.get())],
        "control": _worker("control", settings.CONTROL_CONCURRENCY.get()
                           or threads or UNSIZED_CONTROL_THREADS),
        # Alarm notifications (SMTP, webhook) wait on the network too, rarely: the files
        # worker serves them beside the nodes' file work.
        "files": _worker("files", settings.FILES_CONCURRENCY.get(), "files,notify"),
        "simulator": ["daqflow", "simulate", "--topology", str(topology or "")],
        "beat": ["celery", "-A", CELERY_APP, "beat", "--schedule",
                 f"{instance}/celerybeat-schedule", "--loglevel", "INFO"],
        "flower": ["celery", "-A", CELERY_APP, "flower", "--address=127.0.0.1",
                   f"--port={settings.FLOWER_PORT.get()}"],
    }


def with_allocator_settings(env: dict[str, str]) -> dict[str, str]:
    """``env`` with ALLOCATOR_ENVIRONMENT's settings added where it has none of its own.

    A GLIBC_TUNABLES of the operator's that names other tunables keeps them, and gets
    daqflow's added unless it names the same one.
    """
    out = dict(env)
    for name, value in ALLOCATOR_ENVIRONMENT.items():
        own = out.get(name)
        if not own:
            out[name] = value
        elif name == "GLIBC_TUNABLES":
            named = {item.split("=", 1)[0] for item in own.split(":")}
            added = [item for item in value.split(":") if item.split("=", 1)[0] not in named]
            out[name] = ":".join([own, *added])
    return out


def scale(commands: dict[str, list[str]], name: str, count: int) -> dict[str, list[str]]:
    """Run ``count`` copies of a process (``name1``, ``name2``, …), each its own Celery node.

    A Celery worker process is bound to one core by Python's GIL; on a host with
    several cores, several control workers share a stage's steps through the queue.
    """
    if count <= 1 or name not in commands:
        return commands
    scaled = {}
    for key, argv in commands.items():
        if key != name:
            scaled[key] = argv
            continue
        for i in range(1, count + 1):
            scaled[f"{name}{i}"] = [f"{name}{i}@%h" if arg == f"{name}@%h" else arg
                                    for arg in argv]
    return scaled
