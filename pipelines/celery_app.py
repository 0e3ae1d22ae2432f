"""The one Celery application of daqflow.

Its configuration lives in ``pipelines.celeryconfig`` and is imported lazily,
the first time the app needs it (a worker starting, a canvas being sent), so
the environment is read then and not when this module is imported.
"""
from celery import Celery

app = Celery("daqflow", include=["pipelines.tasks"])
app.config_from_object("pipelines.celeryconfig")
