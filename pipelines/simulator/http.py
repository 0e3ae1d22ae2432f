"""The simulator's wire: SOAP answers over HTTP/1.1 keep-alive, and the /_sim/ control endpoints.

Every listening address of a simulator is served by one asyncio event loop in one thread
(``Wire``): a connection is a ``Connection`` protocol, not a thread. A simulator plays
hundreds of ECC servers, and each worker process keeps a connection to each: with a
thread per connection, a 1024-server start kept 4,000 threads in the simulator waking
one another for the interpreter lock, and the simulator's CPU a request grew with the
DAQ (see bench/RECORD.md).

``Wire`` serves any object with ``routes``, ``answer_soap`` and ``control`` (see
``simulator.ecc.Simulator``).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import json
import socket
import threading
import weakref
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING

from pipelines.daq.ecc.replies import SOAP_ENV

if TYPE_CHECKING:  # the simulator imports this module, not the other way round
    from pipelines.simulator.ecc import Simulator

ECC_NS = "urn:ecc"
MAX_HEADERS = 100
MAX_LINE = 65536
# Hundreds of workers connect at once when a big DAQ starts.
BACKLOG = 1024


def soap_response(element: str, code: int, message: str, **fields) -> str:
    body = f"<ecc:ErrorCode>{code}</ecc:ErrorCode><ecc:ErrorMessage>{escape(message)}</ecc:ErrorMessage>"
    body += "".join(f"<ecc:{k}>{escape(str(v))}</ecc:{k}>" for k, v in fields.items())
    return (f'<?xml version="1.0" encoding="UTF-8"?>'
            f'<SOAP-ENV:Envelope xmlns:SOAP-ENV="{SOAP_ENV}" xmlns:ecc="{ECC_NS}">'
            f"<SOAP-ENV:Body><ecc:{element}>{body}</ecc:{element}></SOAP-ENV:Body>"
            f"</SOAP-ENV:Envelope>")


def soap_fault(text: str) -> str:
    """A SOAP client fault (a request the server could not read)."""
    return (f'<SOAP-ENV:Envelope xmlns:SOAP-ENV="{SOAP_ENV}"><SOAP-ENV:Body>'
            f"<SOAP-ENV:Fault><faultcode>SOAP-ENV:Client</faultcode>"
            f"<faultstring>{escape(text)}</faultstring></SOAP-ENV:Fault>"
            f"</SOAP-ENV:Body></SOAP-ENV:Envelope>")


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@dataclass
class Request:
    """One HTTP request as read off a connection."""

    method: str
    path: str
    headers: dict[str, str]  # by lower-case name
    body: bytes
    keep_alive: bool


@dataclass
class Reply:
    """What a request is answered with; ``delay`` seconds late, or no answer and the
    connection dropped (``drop``: a dead server)."""

    status: int = 200
    body: str = ""
    content_type: str = "text/plain"
    delay: float = 0.0
    drop: bool = False


class BadRequest(Exception):
    """A request that cannot be read: answered with ``status`` and the connection closed."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def read_request(buffer: bytearray) -> Request | None:
    """Take one whole request off the front of ``buffer``: None until it has all arrived,
    BadRequest for one that cannot be read. Lines may end in CRLF or a bare LF."""
    while buffer[:2] == b"\r\n" or buffer[:1] == b"\n":  # blank lines before a request
        del buffer[:2 if buffer[:1] == b"\r" else 1]
    lines, start = [], 0
    while True:
        end = buffer.find(b"\n", start)
        if end < 0:
            if len(buffer) - start > MAX_LINE:
                raise BadRequest(414 if not lines else 431, "line too long")
            return None
        line = bytes(buffer[start:end]).rstrip(b"\r")
        start = end + 1
        if not line:
            break
        lines.append(line)
        if len(lines) > MAX_HEADERS + 1:
            raise BadRequest(431, "Too many headers")
    words = lines[0].decode("iso-8859-1").split()
    if len(words) != 3 or not words[2].startswith("HTTP/"):
        raise BadRequest(400, f"bad request line {lines[0][:100]!r}")
    method, path, version = words
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise BadRequest(505, f"HTTP version {version} not supported")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.decode("iso-8859-1").partition(":")
        if not colon:
            raise BadRequest(400, f"bad header line {line[:100]!r}")
        headers[name.strip().lower()] = value.strip()
    try:
        length = int(headers.get("content-length") or 0)
    except ValueError:
        raise BadRequest(400, "bad Content-Length") from None
    if len(buffer) - start < length:
        return None
    body = bytes(buffer[start:start + length])
    del buffer[:start + length]
    connection = headers.get("connection", "").lower()
    keep_alive = (connection != "close" if version == "HTTP/1.1"
                  else connection == "keep-alive")
    return Request(method, path, headers, body, keep_alive)


def response_bytes(status: int, body: str, content_type: str, close: bool = False) -> bytes:
    """An HTTP/1.1 response; ``close`` says the connection ends after it."""
    data = body.encode()
    return (f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(data)}\r\n" + ("Connection: close\r\n" if close else "")
            + "\r\n").encode("latin-1") + data


class Connection(asyncio.Protocol):
    """One client's connection to a listening address: requests answered in order."""

    def __init__(self, sim: Simulator, address: tuple[str, int]):
        self.sim, self.address = sim, address
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.waiting = False  # a late answer is on its way: later requests wait for it

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self.serve()

    def keep_open(self, request: Request) -> bool:
        """Whether the connection stays open after answering ``request``."""
        return request.keep_alive

    def serve(self) -> None:
        """Answer every whole request in the buffer, in order."""
        while not self.waiting and self.transport is not None and not self.transport.is_closing():
            try:
                request = read_request(self.buffer)
            except BadRequest as exc:
                self.transport.write(response_bytes(exc.status, f"{exc}\n", "text/plain",
                                                    close=True))
                self.transport.close()
                return
            if request is None:
                return
            reply = answer(self.sim, self.address, request)
            if reply.drop:  # a dead server also drops the connections clients kept alive
                self.transport.close()
                return
            if reply.delay > 0:  # made at once, late to arrive
                self.waiting = True
                asyncio.get_running_loop().call_later(reply.delay, self._send_late,
                                                      request, reply)
                return
            if not self.send(request, reply):
                return

    def _send_late(self, request: Request, reply: Reply) -> None:
        self.waiting = False
        if self.send(request, reply):
            self.serve()  # what arrived meanwhile

    def send(self, request: Request, reply: Reply) -> bool:
        """Answer ``request``; whether the connection is still open for the next one."""
        if self.transport is None or self.transport.is_closing():
            return False
        keep = self.keep_open(request)
        self.transport.write(response_bytes(reply.status, reply.body, reply.content_type,
                                            close=not request.keep_alive))
        if not keep:
            self.transport.close()
        return keep

    def connection_lost(self, exc) -> None:
        self.transport = None


def answer(sim: Simulator, address: tuple[str, int], request: Request) -> Reply:
    """What a simulator answers a request on ``address`` with."""
    path = request.path.split("?", 1)[0]
    if path.startswith("/_sim/") and request.method in ("GET", "POST", "DELETE"):
        try:
            payload = json.loads(request.body) if request.body else {}
        except json.JSONDecodeError:
            return Reply(400, '{"error": "body is not JSON"}', "application/json")
        status, result = sim.control(request.method, path, payload)
        return Reply(status, json.dumps(result), "application/json")
    if request.method in ("GET", "DELETE"):
        return Reply(404, "not found")
    if request.method != "POST":
        return Reply(501, f"unsupported method {request.method}")
    server = sim.routes.get(address, {}).get(path.rstrip("/") or "/")
    if server is None:
        return Reply(404, f"no ECC server at {path}")
    if any(f.kind == "refuse" for f in server.faults):
        return Reply(drop=True)
    try:
        text, delay = sim.answer_soap(server, request.body)
    except (ValueError, IndexError, TypeError) as exc:  # lxml's XMLSyntaxError is a ValueError
        return Reply(500, soap_fault(str(exc)), "text/xml; charset=utf-8")
    return Reply(200, text, "text/xml; charset=utf-8", delay=delay)


class Wire:
    """A simulator's listening addresses, served by one event loop in one thread.

    ``open`` and ``close`` may be called from any thread, and from the loop's own (a
    control request that closes a port): a port listens, or refuses, when they return.
    """

    def __init__(self, sim: Simulator, protocol=Connection, ssl=None):
        self.sim, self.protocol, self.ssl = sim, protocol, ssl
        self.loop = asyncio.new_event_loop()
        self.listening: dict[tuple[str, int], socket.socket] = {}
        self.connections: weakref.WeakSet = weakref.WeakSet()
        self.thread = threading.Thread(target=self.loop.run_forever, name="sim-wire",
                                       daemon=True)
        self.thread.start()

    def _in_loop(self, work):
        if threading.current_thread() is self.thread:
            return work()
        done: concurrent.futures.Future = concurrent.futures.Future()

        def run():
            try:
                done.set_result(work())
            except BaseException as exc:  # handed to the caller's thread
                done.set_exception(exc)
        self.loop.call_soon_threadsafe(run)
        return done.result(timeout=30)

    def open(self, address: tuple[str, int]) -> None:
        """Listen on ``address`` (an OSError if it cannot)."""
        def start():
            if address in self.listening:
                return
            sock = socket.create_server(address, backlog=BACKLOG)
            sock.setblocking(False)
            self.loop.add_reader(sock.fileno(), self._accept, sock, address)
            self.listening[address] = sock
        self._in_loop(start)

    def _accept(self, sock: socket.socket, address: tuple[str, int]) -> None:
        for _ in range(BACKLOG):
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # aborted by the client before it was taken, out of files
                return
            conn.setblocking(False)
            task = self.loop.create_task(self.loop.connect_accepted_socket(
                lambda: self._connection(address), conn, ssl=self.ssl))
            # A client that gives up during the TLS handshake: its connection is gone.
            task.add_done_callback(lambda t: t.cancelled() or t.exception())

    def _connection(self, address: tuple[str, int]) -> Connection:
        connection = self.protocol(self.sim, address)
        self.connections.add(connection)
        return connection

    def close(self, address: tuple[str, int]) -> None:
        """Stop listening on ``address`` (new connections are refused); kept connections
        stay until their next request."""
        def stop():
            sock = self.listening.pop(address, None)
            if sock is not None:
                self.loop.remove_reader(sock.fileno())
                sock.close()
        self._in_loop(stop)

    def shutdown(self) -> None:
        """Close every address and every connection, and stop the loop's thread."""
        def stop():
            for address in list(self.listening):
                self.close(address)
            for connection in list(self.connections):
                if connection.transport is not None:
                    connection.transport.abort()
            self.loop.stop()
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(stop)
            self.thread.join(10)
        if not self.loop.is_running():
            self.loop.close()
