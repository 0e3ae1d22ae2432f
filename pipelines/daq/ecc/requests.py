"""ECC requests rendered from a template zeep built once, instead of by zeep each time.

Every ECC request is one flat element of string fields (a transition's ``configID`` and
``table``; GetState none). zeep builds one in about 100 µs of CPU, and a worker process
builds one the first time it meets each server for each config: in a large DAQ's first
runs, with several worker processes, that was several times the rest of the call. A
``FlatRequest`` asks zeep once per operation for a request whose fields hold markers,
and then only puts each field's text, escaped as lxml escapes it, in place of its
marker: the same bytes zeep gives. A value that is not plain printable ASCII (where
lxml writes character references, or refuses the string) is left to zeep, as is an
operation whose request is not of that shape.
"""
from __future__ import annotations

import re

from lxml import etree

# What the template renders exactly as lxml would: printable ASCII, tabs and newlines.
_PLAIN = re.compile(r"[\t\n\x20-\x7e]*\Z")


class FlatRequest:
    """Renders the requests of one operation from zeep's own, built once with markers."""

    def __init__(self, zeep_client, service, name: str, operation):
        """``operation``: zeep's binding operation (``binding.get(name)``)."""
        self.fields, self.parts = self._template(zeep_client, service, name, operation)

    @staticmethod
    def _template(zeep_client, service, name: str, operation):
        element = getattr(operation.input, "body", None)
        fields = [field_name for field_name, _ in
                  getattr(getattr(element, "type", None), "elements", ())]
        markers = {field: f"daqflow-field-{i}-marker" for i, field in enumerate(fields)}
        try:
            request = etree.tostring(zeep_client.create_message(service, name, **markers))
        except Exception:  # noqa: BLE001 - a field that takes no string: zeep, every time
            return None, None
        text = request.decode("ascii")
        # The fields in the order they appear, each marker exactly once.
        if any(text.count(marker) != 1 for marker in markers.values()):
            return None, None
        ordered = sorted(fields, key=lambda field: text.index(markers[field]))
        parts, rest = [], text
        for field in ordered:
            before, rest = rest.split(markers[field])
            parts.append(before)
        parts.append(rest)
        return ordered, parts

    def render(self, arguments: dict[str, str]) -> bytes | None:
        """The request for these field values, or None where zeep must build it (a value
        that is not plain, a field missing or added, an operation of another shape)."""
        if self.fields is None or len(arguments) != len(self.fields):
            return None
        pieces = [self.parts[0]]
        for field, part in zip(self.fields, self.parts[1:]):
            value = arguments.get(field)
            if not isinstance(value, str) or not _PLAIN.match(value):
                return None
            # As lxml writes an element's text: &, < and > escaped.
            pieces.append(value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"))
            pieces.append(part)
        return "".join(pieces).encode("ascii")
