"""Celery wiring: the one app (``app``), its configuration (``celeryconfig``), the result
backend and what reads it (``results``), and the canvases, built from database rows as
pure functions (``canvases``). The tasks themselves are run control's (``runcontrol.tasks``)."""
