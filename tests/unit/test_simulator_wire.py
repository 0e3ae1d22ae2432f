"""The simulator's HTTP reading: whole requests off a connection's bytes, in any pieces."""
from __future__ import annotations

import pytest

from pipelines.simulator.http import BadRequest, read_request, response_bytes

BODY = b"<Envelope/>"
REQUEST = (b"POST /ecc-cobo1 HTTP/1.1\r\nHost: x\r\nContent-LENGTH: 11\r\n"
           b"Content-Type: text/xml\r\n\r\n" + BODY)


def test_a_request_is_read_only_once_all_of_it_has_arrived():
    buffer = bytearray()
    for i in range(len(REQUEST) - 1):
        buffer.append(REQUEST[i])
        assert read_request(buffer) is None
    buffer.append(REQUEST[-1])
    request = read_request(buffer)
    assert (request.method, request.path, request.body) == ("POST", "/ecc-cobo1", BODY)
    assert request.headers["content-type"] == "text/xml" and request.keep_alive
    assert buffer == b""  # taken off the front


def test_requests_sent_back_to_back_are_read_one_at_a_time_in_order():
    second = REQUEST.replace(b"/ecc-cobo1", b"/ecc-cobo2")
    buffer = bytearray(b"\r\n" + REQUEST + second + b"POST / HT")
    assert read_request(buffer).path == "/ecc-cobo1"
    assert read_request(buffer).path == "/ecc-cobo2"
    assert read_request(buffer) is None and buffer == b"POST / HT"


def test_bare_line_feeds_end_lines_too():
    request = read_request(bytearray(REQUEST.replace(b"\r\n", b"\n")))
    assert request.path == "/ecc-cobo1" and request.body == BODY


@pytest.mark.parametrize("version, connection, keep_alive", [
    ("HTTP/1.1", "", True), ("HTTP/1.1", "Connection: close\r\n", False),
    ("HTTP/1.0", "", False), ("HTTP/1.0", "Connection: Keep-Alive\r\n", True),
])
def test_the_connection_is_kept_as_the_http_version_and_the_client_say(
        version, connection, keep_alive):
    raw = f"GET /_sim/state {version}\r\n{connection}\r\n".encode()
    assert read_request(bytearray(raw)).keep_alive is keep_alive


@pytest.mark.parametrize("raw, status", [
    (b"POST / HTTP/1.1\r\n" + b"".join(b"X-Filler-%d: 1\r\n" % i for i in range(150)), 431),
    (b"POST /\r\n\r\n", 400),
    (b"POST / HTTP/2.0\r\n\r\n", 505),
    (b"POST / HTTP/1.1\r\nContent-Length: many\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nno colon here\r\n\r\n", 400),
    (b"POST /" + b"x" * 70000, 414),
])
def test_a_request_that_cannot_be_read_is_refused_with_its_status(raw, status):
    with pytest.raises(BadRequest) as info:
        read_request(bytearray(raw))
    assert info.value.status == status


def test_an_answer_says_its_length_and_whether_the_connection_ends():
    kept = response_bytes(200, "é", "text/plain")
    assert kept == b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n\xc3\xa9"
    assert b"\r\nConnection: close\r\n" in response_bytes(431, "x", "text/plain", close=True)


class _Transport:
    """What a connection writes, as asyncio's transport would take it."""

    def __init__(self):
        self.sent, self.closed = bytearray(), False

    def write(self, data: bytes) -> None:
        self.sent += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


class _Server:
    faults: list = []


class _Simulator:
    """Two servers on one address: /slow answers 50 ms late, /quick at once."""

    routes = {("127.0.0.1", 1): {"/slow": _Server(), "/quick": _Server()}}

    def answer_soap(self, server, body):
        late = server is self.routes[("127.0.0.1", 1)]["/slow"]
        return f"<{'slow' if late else 'quick'}/>", 0.05 if late else 0.0


def test_requests_on_one_connection_are_answered_in_order_even_behind_a_late_answer():
    import asyncio

    from pipelines.simulator.http import Connection

    def post(path: str) -> bytes:
        return f"POST {path} HTTP/1.1\r\nContent-Length: 4\r\n\r\n<a/>".encode()

    async def exchange():
        connection, transport = Connection(_Simulator(), ("127.0.0.1", 1)), _Transport()
        connection.connection_made(transport)
        connection.data_received(post("/slow") + post("/quick"))
        held_back = bytes(transport.sent)  # the quick answer must not overtake the slow one
        await asyncio.sleep(0.2)
        return held_back, bytes(transport.sent)

    held_back, sent = asyncio.run(exchange())
    assert held_back == b""
    assert sent.index(b"<slow/>") < sent.index(b"<quick/>")
    assert sent.count(b"HTTP/1.1 200 OK") == 2
