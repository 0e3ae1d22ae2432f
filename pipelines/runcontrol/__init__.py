"""Run control: the rules and the record.

``planning`` (the rules, the stages in hardware order), ``launching`` (lock, record,
dispatch), ``replay``, ``lock``, ``records`` (what the workers write: steps, stages,
workflows, runs), ``tasks`` (the Celery tasks: call a DAQ client, record the outcome),
``watch`` (beat: ECC states, lost steps, stalled workflows), ``progress`` and
``status`` (the reads the page polls), ``accounts`` (who may act, and the audit).
"""
