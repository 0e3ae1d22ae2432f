"""Reading an ECC server's SOAP answers: the plain ones directly, anything else through zeep.

Every ECC answer is one flat element of simple fields (ErrorCode, ErrorMessage, and
State and Transition, or Text), and a start reads two of them for each of hundreds of
sources. zeep's general reading (a parser built per answer, value objects, its
validation walk) was most of a GetState's CPU. ``FlatReply`` reads an answer of exactly
the shape the WSDL gives, with the WSDL's own types; for any other answer (a SOAP
fault, a missing or extra field, an attribute, a DOCTYPE, another HTTP status) it
says None, and zeep reads it as before, with its own errors.
"""
from __future__ import annotations

import threading

from lxml import etree

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
_ENVELOPE, _HEADER, _BODY = (f"{{{SOAP_ENV}}}{name}" for name in ("Envelope", "Header", "Body"))
XML_MEDIA_TYPES = ("text/xml", "application/soap+xml")

# lxml parsers are not to be used by two threads at once: one per step thread.
_parsers = threading.local()


def _parser() -> etree.XMLParser:
    parser = getattr(_parsers, "parser", None)
    if parser is None:
        # As zeep parses answers: no entities resolved, nothing fetched, no huge trees.
        parser = _parsers.parser = etree.XMLParser(
            remove_comments=True, remove_pis=True, resolve_entities=False, no_network=True,
            huge_tree=False)
    return parser


class Answer:
    """The fields of an answer, as attributes (as zeep's object gives them)."""

    def __init__(self, fields: dict):
        self.__dict__.update(fields)

    def __repr__(self) -> str:
        return f"Answer({self.__dict__!r})"


class FlatReply:
    """Reads the answers of one operation whose output element has only simple fields."""

    def __init__(self, operation):
        """``operation``: zeep's binding operation (``binding.get(name)``)."""
        element = getattr(operation.output, "body", None)
        self.tag = element.qname.text if element is not None else None
        fields = [] if element is not None else None
        for name, field in getattr(getattr(element, "type", None), "elements", ()):
            simple = not hasattr(field.type, "elements") and hasattr(field.type, "pythonvalue")
            if not simple or field.max_occurs != 1 or field.min_occurs != 1:
                fields = None  # not flat: zeep reads every answer of this operation
                break
            fields.append((field.qname.text, name, field.type.pythonvalue))
        self.fields = fields

    def read(self, status: int, content_type: str, content: bytes) -> Answer | None:
        """The answer's fields, or None when it is not a plain answer of this operation."""
        if self.fields is None or status != 200:
            return None
        if content_type.split(";", 1)[0].strip().lower() not in XML_MEDIA_TYPES:
            return None  # multipart (attachments) and anything unexpected: zeep's
        try:
            root = etree.fromstring(content, _parser())
        except etree.XMLSyntaxError:
            return None
        if root.tag != _ENVELOPE or root.getroottree().docinfo.doctype:
            return None
        parts = list(root)
        if parts and parts[0].tag == _HEADER:
            parts = parts[1:]
        if len(parts) != 1 or parts[0].tag != _BODY or len(parts[0]) != 1:
            return None
        answer = parts[0][0]
        if answer.tag != self.tag or len(answer) != len(self.fields):
            return None  # a Fault, another operation's answer, fields missing or added
        values = {}
        for child, (tag, name, convert) in zip(answer, self.fields):
            if child.tag != tag or len(child) or child.attrib:
                return None  # out of order, nested, or typed or nil by attribute
            try:
                values[name] = None if child.text is None else convert(child.text)
            except (TypeError, ValueError):
                return None
        return Answer(values)
