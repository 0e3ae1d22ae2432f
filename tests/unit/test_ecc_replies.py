"""ECC answers read directly (replies.FlatReply) mean what zeep reads in them.

Each answer below goes through both readers: where the direct one reads it, its fields
must equal zeep's; where it declines (None), zeep reads it as before, with its errors.
"""
import pytest
from zeep.exceptions import Fault

from pipelines.daq.ecc.transport import Reply

ENV = "http://schemas.xmlsoap.org/soap/envelope/"


def envelope(body: str, header: str = "", prefix: str = "SOAP-ENV") -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?><{prefix}:Envelope xmlns:{prefix}="{ENV}" '
            f'xmlns:ecc="urn:ecc" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
            f"{header}<{prefix}:Body>{body}</{prefix}:Body></{prefix}:Envelope>").encode()


def state(code="0", message="", st="3", transition="0", extra="") -> str:
    return (f"<ecc:ResponseState><ecc:ErrorCode>{code}</ecc:ErrorCode>"
            f"<ecc:ErrorMessage>{message}</ecc:ErrorMessage><ecc:State>{st}</ecc:State>"
            f"<ecc:Transition>{transition}</ecc:Transition>{extra}</ecc:ResponseState>")


def text(code="0", message="", words="") -> str:
    return (f"<ecc:ResponseText><ecc:ErrorCode>{code}</ecc:ErrorCode>"
            f"<ecc:ErrorMessage>{message}</ecc:ErrorMessage><ecc:Text>{words}</ecc:Text>"
            "</ecc:ResponseText>")


PLAIN = {  # read directly
    "GetState, idle": ("GetState", envelope(state())),
    "GetState, in transition": ("GetState", envelope(state(st="2", transition="3"))),
    "GetState, refused with a message": ("GetState", envelope(state("5", "not now &amp; here"))),
    "GetState, padded numbers": ("GetState", envelope(state(st=" 4 ", transition="\n0\n"))),
    "GetState, under a Header, other prefix": (
        "GetState", envelope(state(), header="<S:Header/>", prefix="S")),
    "GetState, pretty-printed": ("GetState", envelope(
        "\n  " + state().replace("><", ">\n    <") + "\n")),
    "Describe, its text": ("Describe", envelope(text(words="run 12 &lt;ok&gt;"))),
    "Describe, refused": ("Describe", envelope(text("3", "wrong state: IDLE"))),
    "Describe, empty text": ("Describe", envelope(text().replace("<ecc:Text></ecc:Text>",
                                                           "<ecc:Text/>"))),
}
UNUSUAL = {  # left to zeep
    "a field missing": ("GetState", envelope(
        state().replace("<ecc:Transition>0</ecc:Transition>", ""))),
    "a field added": ("GetState", envelope(state(extra="<ecc:Extra>1</ecc:Extra>"))),
    "fields out of order": ("GetState", envelope(
        "<ecc:ResponseState><ecc:ErrorMessage/><ecc:ErrorCode>0</ecc:ErrorCode>"
        "<ecc:State>3</ecc:State><ecc:Transition>0</ecc:Transition></ecc:ResponseState>")),
    "a nil field": ("GetState", envelope(state().replace(
        "<ecc:ErrorMessage></ecc:ErrorMessage>", '<ecc:ErrorMessage xsi:nil="true"/>'))),
    "a number that is not one": ("GetState", envelope(state(st="three"))),
    "another operation's answer": ("GetState", envelope(text())),
    "not an envelope": ("GetState", state().replace("ecc:", "").encode()),
}


def zeep_reads(soap, operation, content, status=200):
    reply = Reply(status, {"content-type": "text/xml; charset=utf-8"}, content)
    return soap.binding.process_reply(soap.zeep, soap.binding.get(operation), reply)


def fields_of(answer, operation) -> dict:
    names = ["ErrorCode", "ErrorMessage"] + (
        ["State", "Transition"] if operation == "GetState" else ["Text"])
    return {name: getattr(answer, name) for name in names}


@pytest.mark.parametrize("case", PLAIN)
def test_a_plain_answer_is_read_directly_as_zeep_reads_it(soap, case):
    operation, content = PLAIN[case]
    answer = soap.readers[operation].read(200, "text/xml; charset=utf-8", content)
    assert answer is not None
    assert fields_of(answer, operation) == fields_of(zeep_reads(soap, operation, content),
                                                     operation)


@pytest.mark.parametrize("case", UNUSUAL)
def test_an_unusual_answer_is_left_to_zeep(soap, case):
    operation, content = UNUSUAL[case]
    assert soap.readers[operation].read(200, "text/xml", content) is None


def test_a_fault_is_left_to_zeep_which_raises_it_with_the_servers_words(soap):
    fault = envelope("<SOAP-ENV:Fault><faultcode>SOAP-ENV:Server</faultcode>"
                     "<faultstring>board 3 does not answer</faultstring></SOAP-ENV:Fault>")
    assert soap.readers["GetState"].read(500, "text/xml", fault) is None
    assert soap.readers["GetState"].read(200, "text/xml", fault) is None
    with pytest.raises(Fault, match="board 3 does not answer"):
        zeep_reads(soap, "GetState", fault, status=500)


def test_another_media_type_or_status_is_left_to_zeep(soap):
    content = envelope(state())
    assert soap.readers["GetState"].read(200, "multipart/related; type=text/xml", content) is None
    assert soap.readers["GetState"].read(202, "text/xml", content) is None
    assert soap.readers["GetState"].read(200, "application/soap+xml", content) is not None


def test_a_doctype_is_left_to_zeep(soap):
    content = envelope(state()).replace(b"?>", b'?><!DOCTYPE x [<!ENTITY a "b">]>', 1)
    assert soap.readers["GetState"].read(200, "text/xml", content) is None
