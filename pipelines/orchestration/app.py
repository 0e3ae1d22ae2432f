"""The one Celery application of daqflow.

Its configuration lives in ``pipelines.orchestration.celeryconfig`` and is
imported lazily, the first time the app needs it (a worker starting, a canvas
being sent), so the environment is read then and not when this module is
imported. Workers load run control's tasks (``pipelines.runcontrol.tasks``).
"""
from celery import Celery

app = Celery("daqflow", include=["pipelines.runcontrol.tasks"])
app.config_from_object("pipelines.orchestration.celeryconfig")
