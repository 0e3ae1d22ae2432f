"""The processes of one daqflow host, as argument lists: what ``daqflow up`` runs.

They travel inside the package (a wheel has no Procfile). The top-level
``Procfile`` says the same for honcho and foreman users; a test checks that the
two agree, defaults included.
"""
from __future__ import annotations

from pathlib import Path

from models import settings

CELERY_APP = "pipelines.orchestration.app"


def _worker(name: str, concurrency: int, queues: str | None = None) -> list[str]:
    # ECC transitions and SSH sessions wait on the network: thread pools, many threads.
    return ["celery", "-A", CELERY_APP, "worker", "--pool", "threads", "--concurrency",
            str(concurrency), "--queues", queues or name, "--hostname", f"{name}@%h",
            "--loglevel", "INFO"]


def processes(instance: Path, topology: Path | None,
              port: int | None = None) -> dict[str, list[str]]:
    """Every process by name, in start order: web, control, files, simulator, beat, flower.

    ``simulator`` is for the demo and ``flower`` on request; ``daqflow up`` drops them
    otherwise. Settings are read now, from the environment.
    """
    return {
        "web": ["daqflow", "web", "--host", settings.WEB_HOST.get(), "--port",
                str(port or settings.WEB_PORT.get())],
        "control": _worker("control", settings.CONTROL_CONCURRENCY.get()),
        # Alarm notifications (SMTP, webhook) wait on the network too, rarely: the files
        # worker serves them beside the nodes' file work.
        "files": _worker("files", settings.FILES_CONCURRENCY.get(), "files,notify"),
        "simulator": ["daqflow", "simulate", "--topology", str(topology or "")],
        "beat": ["celery", "-A", CELERY_APP, "beat", "--schedule",
                 f"{instance}/celerybeat-schedule", "--loglevel", "INFO"],
        "flower": ["celery", "-A", CELERY_APP, "flower", "--address=127.0.0.1",
                   f"--port={settings.FLOWER_PORT.get()}"],
    }


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
