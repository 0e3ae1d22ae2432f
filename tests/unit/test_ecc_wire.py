"""The HTTP/1.1 exchange with an ECC server (transport.Wire), over a socket pair.

The other end writes what a server might answer; the test reads what a SOAP call
would get: the status, the headers, the body, and whether the connection may carry the
next request.
"""
import socket

import pytest

from pipelines.daq.ecc.transport import Wire, _Unreadable

REQUEST = b"POST /ecc HTTP/1.1\r\nHost: ecc\r\nContent-Length: 2\r\n\r\nhi"
BODY = b"<SOAP-ENV:Envelope/>"


@pytest.fixture
def pair():
    ours, theirs = socket.socketpair()
    ours.settimeout(5)
    yield Wire(ours), theirs
    ours.close()
    theirs.close()


def answer(pair, *pieces: bytes, close: bool = False):
    wire, server = pair
    for piece in pieces:
        server.sendall(piece)
    if close:
        server.shutdown(socket.SHUT_WR)
    result = wire.exchange(REQUEST)
    assert server.recv(len(REQUEST)) == REQUEST
    return result


def test_an_answer_of_a_given_length_keeps_the_connection(pair):
    status, fields, body, reusable = answer(
        pair, b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: 20\r\n\r\n", BODY)
    assert (status, fields["content-type"], body, reusable) == (200, "text/xml", BODY, True)


def test_headers_are_read_in_any_case_and_in_pieces(pair):
    status, fields, body, _ = answer(pair, b"HTTP/1.1 200 OK\r\nCONTENT-length:", b" 20\r",
                                     b"\n\r\n<SOAP-ENV:", b"Envelope/>")
    assert (fields["content-length"], body) == ("20", BODY)


def test_a_chunked_answer_is_joined(pair):
    status, _, body, reusable = answer(
        pair, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"9\r\n<SOAP-ENV\r\nB;ext=1\r\n:Envelope/>\r\n0\r\nX-Trailer: 1\r\n\r\n")
    assert (status, body, reusable) == (200, BODY, True)


def test_bare_line_feeds_are_read_as_http_client_reads_them(pair):
    status, fields, body, reusable = answer(
        pair, b"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n",
        b"9\n<SOAP-ENV\nB\r\n:Envelope/>\n0\n\n")
    assert (status, fields["transfer-encoding"], body, reusable) == (200, "chunked", BODY, True)


def test_a_chunk_longer_than_its_size_is_unreadable(pair):
    with pytest.raises(_Unreadable, match="longer than its size"):
        answer(pair, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
               b"2\r\n<SOAP\r\n0\r\n\r\n")


def test_an_answer_without_a_length_ends_at_the_close_and_is_not_kept(pair):
    status, _, body, reusable = answer(pair, b"HTTP/1.0 200 OK\r\n\r\n", BODY, close=True)
    assert (status, body, reusable) == (200, BODY, False)


def test_a_server_that_says_close_is_not_kept(pair):
    *_, reusable = answer(pair, b"HTTP/1.1 200 OK\r\nConnection: close\r\n"
                                b"Content-Length: 20\r\n\r\n", BODY)
    assert not reusable


def test_http_1_0_is_kept_only_when_it_says_keep_alive(pair):
    *_, reusable = answer(pair, b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\n"
                                b"Content-Length: 20\r\n\r\n", BODY)
    assert reusable


def test_an_interim_100_continue_is_passed_over(pair):
    status, _, body, _ = answer(pair, b"HTTP/1.1 100 Continue\r\n\r\n",
                                b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 20\r\n\r\n",
                                BODY)
    assert (status, body) == (500, BODY)


def test_bytes_beyond_the_answer_leave_the_connection_out_of_step(pair):
    *_, body, reusable = answer(pair, b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n",
                                BODY + b"HTTP/1.1")
    assert body == BODY and not reusable


def test_an_answer_cut_short_is_an_error_that_says_so(pair):
    with pytest.raises(ConnectionResetError, match="closed after 5 of 20 bytes"):
        answer(pair, b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n<SOAP", close=True)


def test_a_server_that_closes_without_answering_is_an_error(pair):
    with pytest.raises(ConnectionResetError, match="closed without answering"):
        answer(pair, close=True)


@pytest.mark.parametrize("head", [b"SOAP/1.1 200 OK\r\n\r\n", b"HTTP/1.1 OK\r\n\r\n",
                                  b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
                                  b"HTTP/1.1 200 OK\r\nContent-Length: twenty\r\n\r\n"])
def test_what_is_not_http_is_unreadable(pair, head):
    with pytest.raises(_Unreadable):
        answer(pair, head)


def test_endless_headers_are_refused(pair):
    wire, server = pair
    server.sendall(b"HTTP/1.1 200 OK\r\n" + b"X: " + b"y" * 70000)
    with pytest.raises(_Unreadable, match="no end of its headers"):
        wire.exchange(REQUEST)
