"""The one Celery application of daqflow.

Its configuration lives in ``pipelines.orchestration.celeryconfig`` and is
imported lazily, the first time the app needs it (a worker starting, a canvas
being sent), so the environment is read then and not when this module is
imported. Workers load run control's tasks (``pipelines.runcontrol.tasks``).
"""
import gc

from celery import Celery, signals

from pipelines.orchestration.memory import ReturnFreeMemory

app = Celery("daqflow", include=["pipelines.runcontrol.tasks"])
app.config_from_object("pipelines.orchestration.celeryconfig")
# Every worker (control, files) returns the heap memory its threads freed.
app.steps["worker"].add(ReturnFreeMemory)


@signals.worker_ready.connect
@signals.worker_process_init.connect
def freeze_startup_objects(**_) -> None:
    """Leave what a process built to start (modules, the app, the tasks' clients' schemas)
    out of every later garbage collection; a worker's once it is ready, the web's before
    it serves.

    Python's full collections walk every object the process holds: in a control worker,
    one took about 75 ms of CPU, and one came every few starts, in whichever step or
    callback allocated at that moment. What is frozen is never collected: it lives as
    long as the process anyway.
    """
    gc.collect()
    gc.freeze()
