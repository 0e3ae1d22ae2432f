"""The HTTP under zeep's SOAP calls to the ECC servers: offline schemas, kept-alive connections.

zeep's own transport posts through requests, whose per-call work (merging session
settings, preparing the request, urllib3's pool) was half of a GetState's CPU time;
``http.client``, which replaced it, still read every answer's headers with the email
package and built every request's header block anew: a third of a GetState's CPU, and
a start polls hundreds of servers at once. ECC servers speak plain HTTP/1.1 on the DAQ
network (no proxy, no cookies, no redirects): this transport keeps a few connections
per server alive and exchanges requests and answers on them itself, reading a length,
chunks, or up to the server's close, as HTTP/1.1 allows.
"""
from __future__ import annotations

import select
import socket
import ssl
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

from zeep.transports import Transport

WSDL_DIR = Path(__file__).parent / "wsdl"

# Schemas that ECC WSDLs import by URL, answered from disk: DAQ networks are closed.
LOCAL_SCHEMAS = {
    "http://schemas.xmlsoap.org/soap/encoding/": WSDL_DIR / "soap-encoding.xsd",
}

# Idle connections kept per ECC server: a step's polls and the watch's refresh at most.
KEPT_ALIVE = 4
# An answer's status line and headers: a SOAP server's are a few hundred bytes.
MAX_HEAD = 64 * 1024


class WireError(Exception):
    """The HTTP exchange with an ECC server failed; the message says how, for an operator."""


class _Unreadable(Exception):
    """An answer that is not HTTP/1.x as this transport reads it."""


class Reply:
    """An HTTP answer, as much of it as zeep reads."""

    __slots__ = ("status_code", "fields", "content")

    def __init__(self, status_code: int, fields: dict[str, str], content: bytes):
        # ``fields``: the headers by lower-case name.
        self.status_code, self.fields, self.content = status_code, fields, content

    @property
    def content_type(self) -> str:
        return self.fields.get("content-type", "text/xml")

    @property
    def headers(self):
        # Only zeep's reading of an unusual answer asks (replies.FlatReply reads the rest).
        from requests.structures import CaseInsensitiveDict

        return CaseInsensitiveDict(self.fields)

    @property
    def encoding(self) -> str | None:
        # Only a multipart answer's reading asks.
        for parameter in self.content_type.split(";")[1:]:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "charset":
                return value.strip().strip('"') or None
        return None


class Wire:
    """One connection to an ECC server: a request out, its answer read back."""

    __slots__ = ("sock", "pending")

    def __init__(self, sock: socket.socket):
        # ``pending``: bytes received and not read yet.
        self.sock, self.pending = sock, b""

    def close(self) -> None:
        self.sock.close()

    def exchange(self, request: bytes) -> tuple[int, dict[str, str], bytes, bool]:
        """Send ``request``; (status, headers by lower-case name, body, whether the
        connection may carry another request)."""
        self.sock.sendall(request)
        version, status, fields = self._head()
        while 100 <= status < 200:  # "100 Continue" and such come before the answer
            version, status, fields = self._head()
        connection = fields.get("connection", "").lower()
        reusable = (connection != "close" if version == "HTTP/1.1"
                    else connection == "keep-alive")
        if status in (204, 304):
            body = b""
        elif "chunked" in fields.get("transfer-encoding", "").lower():
            body = self._chunked()
        elif "content-length" in fields:
            try:
                length = int(fields["content-length"])
            except ValueError:
                raise _Unreadable(f"Content-Length {fields['content-length']!r}") from None
            body = self._exactly(length)
        else:  # the body ends where the server closes
            while self._receive():
                pass
            body, self.pending, reusable = self.pending, b"", False
        # Bytes beyond the answer: the connection is out of step.
        return status, fields, body, reusable and not self.pending

    def _receive(self) -> bool:
        chunk = self.sock.recv(65536)
        self.pending += chunk
        return bool(chunk)

    def _head(self) -> tuple[str, int, dict[str, str]]:
        while True:
            # Lines end in CRLF; a bare LF is read as well, as http.client reads it.
            end, blank = self.pending.find(b"\r\n\r\n"), 4
            bare = self.pending.find(b"\n\n")
            if bare >= 0 and (end < 0 or bare < end):
                end, blank = bare, 2
            if end >= 0:
                head, self.pending = self.pending[:end], self.pending[end + blank:]
                break
            if len(self.pending) > MAX_HEAD:
                raise _Unreadable(f"no end of its headers in {MAX_HEAD} bytes")
            if not self._receive():
                raise ConnectionResetError("closed without answering" if not self.pending
                                           else "closed in the middle of its headers")
        status_line, *lines = head.decode("iso-8859-1").replace("\r\n", "\n").split("\n")
        version, _, rest = status_line.partition(" ")
        if not version.startswith("HTTP/1.") or not rest[:3].isdigit():
            raise _Unreadable(f"status line {status_line[:80]!r}")
        fields = {}
        for line in lines:
            name, colon, value = line.partition(":")
            if not colon:
                raise _Unreadable(f"header line {line[:80]!r}")
            fields[name.strip().lower()] = value.strip()
        return version, int(rest[:3]), fields

    def _line(self) -> bytes:
        while (end := self.pending.find(b"\n")) < 0:
            if len(self.pending) > MAX_HEAD or not self._receive():
                raise _Unreadable("a chunk's size line is cut or too long")
        line, self.pending = self.pending[:end], self.pending[end + 1:]
        return line.rstrip(b"\r")

    def _exactly(self, length: int) -> bytes:
        while len(self.pending) < length:
            if not self._receive():
                raise ConnectionResetError(
                    f"closed after {len(self.pending)} of {length} bytes of its answer")
        data, self.pending = self.pending[:length], self.pending[length:]
        return data

    def _chunked(self) -> bytes:
        chunks = []
        while True:
            try:
                size = int(self._line().split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _Unreadable("a chunk's size is not a number") from None
            if size == 0:
                while self._line():  # trailer fields, up to the empty line
                    pass
                return b"".join(chunks)
            chunks.append(self._exactly(size))
            if self._line():  # the line end after each chunk
                raise _Unreadable("a chunk is longer than its size says")


class ClosedNetworkTransport(Transport):
    """Loads WSDL and schemas only from disk; posts over kept-alive connections of its own.

    Every failure of a post is a WireError; the connection it used is dropped.
    """

    def __init__(self, connect_timeout: float, read_timeout: float):
        # zeep's Transport wants a requests session; nothing here posts through it, so
        # every transport shares one instead of building its own (one per ECC server).
        super().__init__(operation_timeout=read_timeout, session=_unused_session())
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        # Idle connections by (scheme, host, port); list.pop and append are atomic, so the
        # step threads that share one server's client need no lock to take and give back.
        self._idle: dict[tuple, list[Wire]] = {}
        # Each address's connection key, and its request line and fixed headers: worked
        # out once, not for every poll.
        self._addresses: dict[str, tuple[tuple, str]] = {}

    def load(self, url):
        local = LOCAL_SCHEMAS.get(url) or LOCAL_SCHEMAS.get(url.rstrip("/") + "/")
        if local is not None:
            return local.read_bytes()
        if urlsplit(url).scheme in ("http", "https"):
            raise OSError(
                f"the WSDL refers to {url}, and daqflow does not fetch schemas over "
                "the network (DAQ networks are closed); add it to "
                "pipelines.daq.ecc.transport.LOCAL_SCHEMAS"
            )
        return super().load(url)

    def post(self, address, message, headers):
        known = self._addresses.get(address)
        if known is None:
            parts = urlsplit(address)
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            known = self._addresses.setdefault(address, (
                (parts.scheme, parts.hostname, parts.port),
                f"POST {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nAccept-Encoding: identity\r\n"))
        key, head = known
        request = (head + "".join(f"{name}: {value}\r\n" for name, value in headers.items())
                   + f"Content-Length: {len(message)}\r\n\r\n").encode("iso-8859-1") + message
        wire = self._take(key, address)
        try:
            status, fields, content, reusable = wire.exchange(request)
        except socket.timeout:
            wire.close()
            raise WireError(f"no answer from {address} in time") from None
        except _Unreadable as exc:
            wire.close()
            raise WireError(f"unreadable HTTP answer from {address} ({exc})") from None
        except OSError as exc:
            wire.close()
            raise WireError(f"connection failed at {address} ({exc or type(exc).__name__})") \
                from None
        idle = self._idle.setdefault(key, [])
        if reusable and len(idle) < KEPT_ALIVE:
            idle.append(wire)
        else:
            wire.close()
        return Reply(status, fields, content)

    def _take(self, key: tuple, address: str) -> Wire:
        """A kept-alive connection to the server that it has not closed, or a new one."""
        idle = self._idle.get(key, [])
        while idle:
            try:
                wire = idle.pop()
            except IndexError:  # another thread took the last one
                break
            # Readable while idle means closed by the server (or out of step): as urllib3,
            # drop it rather than send on it and fail a step for a server that is fine.
            if not _readable(wire.sock):
                return wire
            wire.close()
        scheme, host, port = key
        port = port or (443 if scheme == "https" else 80)
        try:
            sock = socket.create_connection((host, port), timeout=self.connect_timeout)
        except socket.timeout:
            raise WireError(f"no connection to {address} (timed out)") from None
        except ConnectionRefusedError:
            raise WireError(f"connection refused at {address}") from None
        except OSError as exc:
            raise WireError(f"connection failed at {address} ({exc})") from None
        try:
            # A request goes out in one write: no waiting on Nagle for the last segment.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == "https":
                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        except (ssl.SSLError, OSError) as exc:
            sock.close()
            raise WireError(f"connection failed at {address} ({exc})") from None
        # Connecting may take connect_timeout; an answer may take read_timeout.
        sock.settimeout(self.read_timeout)
        return Wire(sock)


@cache
def _unused_session():
    import requests

    return requests.Session()


def _readable(sock: socket.socket) -> bool:
    """Whether a socket has something to read now (poll, not select: a worker with
    hundreds of servers has file descriptors above select's limit of 1024)."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))
