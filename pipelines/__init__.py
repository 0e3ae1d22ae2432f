"""daqflow's engine, by room (see ARCHITECTURE.md): ``daq`` (the hardware's clients),
``topology``, ``simulator``, ``orchestration`` (Celery wiring), ``runcontrol`` (the rules,
the record, the tasks) and ``cli`` (the ``daqflow`` command)."""
