"""Run control's errors: a request refused by a rule, not found, or not sendable; and a
step, stage or workflow that failed (the message says why, in the DAQ's terms)."""


class Invalid(ValueError):
    """Malformed input (HTTP 400, exit 2); the message says which field and why."""


class Refused(Exception):
    """The request breaks a run-control rule; nothing was written (HTTP 409)."""


class NotFound(Exception):
    """No such workflow (HTTP 404)."""


class Unavailable(Exception):
    """The broker could not be reached; the workflow is recorded as failed (HTTP 503)."""


class StepFailed(Exception):
    """A step (or stage, or workflow) failed; the message says why, in the DAQ's terms."""


class Superseded(StepFailed):
    """A callback of an earlier attempt of a stage or workflow, replaced by a replay."""


class Aborted(StepFailed):
    """A running step whose workflow an operator aborted: it stops at its next poll."""
