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


_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m(?:in)?)?\s*"
                       r"(?:(\d+(?:\.\d+)?)s)?")
_SIZE = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}


def duration_seconds(field: str, value: object) -> float | None:
    """A planned length as an operator types it ("30m", "1h30m", "90s", "45" minutes), in
    seconds; None for an empty value; Invalid naming ``field`` otherwise."""
    text = operator_text(field, value, 40).lower().replace(" ", "")
    if not text:
        return None
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return float(text) * 60
    match = _DURATION.fullmatch(text)
    if not match or not any(match.groups()):
        raise Invalid(f"{field} must be a duration like 30m, 1h30m or 90s")
    hours, minutes, seconds = (float(g or 0) for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def size_bytes(field: str, value: object) -> int | None:
    """A size as an operator types it ("20GB", "500 MB", "20" GB), in bytes (powers of ten,
    as disks count); None for an empty value; Invalid naming ``field`` otherwise."""
    text = operator_text(field, value, 40).lower().replace(" ", "")
    if not text:
        return None
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([kmgt]?b?)", text)
    if not match:
        raise Invalid(f"{field} must be a size like 20GB or 500MB")
    unit = match.group(2) if match.group(2) else "gb"
    unit = unit if unit.endswith("b") else unit + "b"
    return int(float(match.group(1)) * _SIZE[unit])
