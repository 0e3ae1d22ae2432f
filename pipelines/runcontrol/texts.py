"""What an operator types (a run's title, later comments and notes): checked where it enters.

Text that a callback will store after the hardware has moved must be storable
before anything is sent: valid Unicode (no lone surrogate, as a JSON ``\\ud800``
or a Latin-1 byte from a terminal becomes), printable (no C0 or C1 control
character: titles end up in logs, file listings and the ELOG), and bounded.
"""
from __future__ import annotations

import re

from pipelines.runcontrol.errors import Invalid

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def operator_text(field: str, value: object, max_length: int) -> str:
    """``value`` stripped, or Invalid naming ``field`` and what is wrong with it."""
    if not isinstance(value, str):
        raise Invalid(f"{field} must be text")
    if _SURROGATE.search(value):
        raise Invalid(f"{field} is not valid Unicode text (check the terminal's or the "
                      "script's encoding: daqflow takes UTF-8)")
    value = value.strip()
    if len(value) > max_length:
        raise Invalid(f"{field} is longer than {max_length} characters")
    if _CONTROL.search(value):
        raise Invalid(f"{field} holds control characters")
    return value
