"""The simulator's wire: SOAP answers over HTTP/1.1 keep-alive, and the /_sim/ control endpoints.

``handler_for`` serves one listening address of a simulator (any object with
``routes``, ``handle_soap`` and ``control``, see ``simulator.ecc.Simulator``).
"""
from __future__ import annotations

import json
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from lxml import etree

from pipelines.daq.ecc.replies import SOAP_ENV

if TYPE_CHECKING:  # the simulator imports this module, not the other way round
    from pipelines.simulator.ecc import Simulator

ECC_NS = "urn:ecc"


class Listener(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # Hundreds of workers connect at once when a big DAQ starts.
    request_queue_size = 1024

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().server_bind()


def soap_response(element: str, code: int, message: str, **fields) -> str:
    body = f"<ecc:ErrorCode>{code}</ecc:ErrorCode><ecc:ErrorMessage>{escape(message)}</ecc:ErrorMessage>"
    body += "".join(f"<ecc:{k}>{escape(str(v))}</ecc:{k}>" for k, v in fields.items())
    return (f'<?xml version="1.0" encoding="UTF-8"?>'
            f'<SOAP-ENV:Envelope xmlns:SOAP-ENV="{SOAP_ENV}" xmlns:ecc="{ECC_NS}">'
            f"<SOAP-ENV:Body><ecc:{element}>{body}</ecc:{element}></SOAP-ENV:Body>"
            f"</SOAP-ENV:Envelope>")


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class Headers(dict):
    """A request's headers by lower-case name; ``get`` takes any case."""

    def get(self, name: str, default=None):
        return dict.get(self, name.lower(), default)


MAX_HEADERS = 100


def handler_for(sim: Simulator, address: tuple[str, int]):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: workers poll the same server often

        def log_message(self, *args):  # the simulator keeps its own request log
            pass

        def parse_request(self) -> bool:
            # http.server reads headers with the email package: three quarters of the
            # simulator's CPU per request, and a start polls hundreds of servers at once.
            # A plain HTTP/1.1 request is read plainly; anything else as http.server does.
            words = self.raw_requestline.decode("iso-8859-1").split()
            if len(words) != 3 or words[2] != "HTTP/1.1":
                return super().parse_request()
            self.command, self.path, self.request_version = words
            self.requestline = " ".join(words)
            headers = Headers()
            for _ in range(MAX_HEADERS):
                line = self.rfile.readline(65537)
                if line in (b"\r\n", b"\n", b""):
                    break
                name, _, value = line.decode("iso-8859-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            else:
                self.send_error(431, "Too many headers")
                return False
            self.headers = headers
            self.close_connection = headers.get("Connection", "").lower() == "close"
            return True

        def _reply(self, status: int, body: str, content_type: str) -> None:
            data = body.encode()
            reason = self.responses.get(status, ("",))[0]
            self.wfile.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
                             f"Content-Length: {len(data)}\r\n\r\n".encode("latin-1") + data)

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _control(self, method: str) -> None:
            body = self._body()
            try:
                payload = json.loads(body) if body else {}
            except json.JSONDecodeError:
                return self._reply(400, '{"error": "body is not JSON"}', "application/json")
            status, result = sim.control(method, urlparse(self.path).path, payload)
            self._reply(status, json.dumps(result), "application/json")

        def do_GET(self):
            if self.path.startswith("/_sim/"):
                return self._control("GET")
            self._reply(404, "not found", "text/plain")

        def do_DELETE(self):
            self._control("DELETE")

        def do_POST(self):
            path = urlparse(self.path).path
            if path.startswith("/_sim/"):
                return self._control("POST")
            server = sim.routes.get(address, {}).get(path.rstrip("/") or "/")
            body = self._body()
            if server is None:
                return self._reply(404, f"no ECC server at {path}", "text/plain")
            if any(f.kind == "refuse" for f in server.faults):
                # A dead server also drops the connections clients kept alive.
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            try:
                answer = sim.handle_soap(server, body)
            except (etree.XMLSyntaxError, IndexError, TypeError) as exc:
                fault = (f'<SOAP-ENV:Envelope xmlns:SOAP-ENV="{SOAP_ENV}"><SOAP-ENV:Body>'
                         f"<SOAP-ENV:Fault><faultcode>SOAP-ENV:Client</faultcode>"
                         f"<faultstring>{escape(str(exc))}</faultstring></SOAP-ENV:Fault>"
                         f"</SOAP-ENV:Body></SOAP-ENV:Envelope>")
                return self._reply(500, fault, "text/xml; charset=utf-8")
            self._reply(200, answer, "text/xml; charset=utf-8")

    return Handler
