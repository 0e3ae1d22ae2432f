"""The HTTP under zeep's SOAP calls to the ECC servers: offline schemas, kept-alive connections.

zeep's own transport posts through requests, whose per-call work (merging session
settings, preparing the request, urllib3's pool) was half of a GetState's CPU time; a
start polls hundreds of servers at once, so that time is the control workers' largest
share after Celery's. ECC servers speak plain HTTP/1.1 on the DAQ network (no proxy, no
cookies, no redirects), which ``http.client`` serves alone: this transport keeps a few
connections per server alive and posts on them.
"""
from __future__ import annotations

import http.client
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


class WireError(Exception):
    """The HTTP exchange with an ECC server failed; the message says how, for an operator."""


class Reply:
    """An HTTP answer, as much of it as zeep reads."""

    __slots__ = ("status_code", "headers", "content")

    def __init__(self, status_code: int, headers, content: bytes):
        self.status_code, self.headers, self.content = status_code, headers, content

    @property
    def encoding(self) -> str | None:
        # Only a multipart answer's reading asks: parsing it for every poll cost 3 % of a
        # start's CPU.
        return self.headers.get_content_charset()


class ClosedNetworkTransport(Transport):
    """Loads WSDL and schemas only from disk; posts over kept-alive ``http.client`` connections.

    Every failure of a post is a WireError; the connection it used is dropped.
    """

    def __init__(self, connect_timeout: float, read_timeout: float):
        # zeep's Transport wants a requests session; nothing here posts through it, so
        # every transport shares one instead of building its own (one per ECC server).
        super().__init__(operation_timeout=read_timeout, session=_unused_session())
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        # Idle connections by (scheme, host, port); list.pop and append are atomic, so the
        # step threads that share one server's client need no lock to take and give back.
        self._idle: dict[tuple, list[http.client.HTTPConnection]] = {}

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
        parts = urlsplit(address)
        key = (parts.scheme, parts.hostname, parts.port)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection = self._take(key, address)
        try:
            connection.request("POST", target, body=message, headers=headers)
            answer = connection.getresponse()
            content = answer.read()
        except socket.timeout:
            connection.close()
            raise WireError(f"no answer from {address} in time") from None
        except (http.client.HTTPException, OSError) as exc:
            connection.close()
            raise WireError(f"connection failed at {address} ({exc or type(exc).__name__})") \
                from None
        # A server that closes after its answer has closed this one's socket too.
        if connection.sock is not None:
            idle = self._idle.setdefault(key, [])
            if len(idle) < KEPT_ALIVE:
                idle.append(connection)
            else:
                connection.close()
        return Reply(answer.status, answer.headers, content)

    def _take(self, key: tuple, address: str) -> http.client.HTTPConnection:
        """A kept-alive connection to the server that it has not closed, or a new one."""
        idle = self._idle.get(key, [])
        while idle:
            try:
                connection = idle.pop()
            except IndexError:  # another thread took the last one
                break
            # Readable while idle means closed by the server (or out of step): as urllib3,
            # drop it rather than send on it and fail a step for a server that is fine.
            if not _readable(connection.sock):
                return connection
            connection.close()
        scheme, host, port = key
        if scheme == "https":
            connection = http.client.HTTPSConnection(
                host, port, timeout=self.connect_timeout, context=ssl.create_default_context())
        else:
            connection = http.client.HTTPConnection(host, port, timeout=self.connect_timeout)
        try:
            connection.connect()
        except socket.timeout:
            raise WireError(f"no connection to {address} (timed out)") from None
        except ConnectionRefusedError:
            raise WireError(f"connection refused at {address}") from None
        except OSError as exc:
            raise WireError(f"connection failed at {address} ({exc})") from None
        # Connecting may take connect_timeout; an answer may take read_timeout. (Nagle is
        # already off: http.client sets TCP_NODELAY when it connects.)
        connection.sock.settimeout(self.read_timeout)
        return connection


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
