"""The SOAP client of an ECC server (getEccSoapServer), built on zeep.

The WSDL ships with daqflow (``wsdl/``) or, with ``DAQFLOW_ECC_WSDL``, is the one a
deployment's servers ship; it is loaded offline. Nothing touches the network at
import time; clients are built on first use and reused per ECC server.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Iterable, NamedTuple

from lxml import etree

from models import settings
from pipelines.daq.ecc.payloads import (
    ConfigId,
    DataLink,
    config_id_xml,
    data_link_set_xml,
    parse_config_ids,
)
from pipelines.daq.ecc.replies import FlatReply
from pipelines.daq.ecc.requests import FlatRequest
from pipelines.daq.ecc.states import Operation
from pipelines.daq.ecc.transport import WSDL_DIR, ClosedNetworkTransport, WireError

DEFAULT_WSDL = WSDL_DIR / "ecc.wsdl"
BINDING = "{urn:ecc}ecc"


class EccError(Exception):
    """Any failure talking to an ECC server: error code, SOAP fault, timeout, refusal."""

    def __init__(self, server: str, operation: str, message: str, code: int | None = None):
        self.server, self.operation, self.message, self.code = server, operation, message, code
        where = f"ECC server {server}: {operation}"
        super().__init__(f"{where} failed: {message}" + (f" (error code {code})" if code else ""))


@dataclass(frozen=True)
class StateReport:
    """What GetState said: the state, and whether a transition is under way."""

    state: int
    transition: int

    @property
    def settled(self) -> bool:
        return self.transition == 0


def wsdl_path() -> str:
    """The WSDL in use: ``DAQFLOW_ECC_WSDL`` if set, else the one daqflow ships."""
    return str(settings.ECC_WSDL.get() or DEFAULT_WSDL)


def _timeouts() -> tuple[float, float]:
    return settings.ECC_CONNECT_TIMEOUT.get(), settings.ECC_READ_TIMEOUT.get()


class Soap(NamedTuple):
    """zeep's side of the ECC calls for one WSDL, shared by every server's client."""

    zeep: object  # zeep's Client: what builds the requests the templates cannot
    service: object  # a service proxy, for zeep's request builder
    binding: object  # the WSDL's binding: each operation's SOAPAction and reader
    readers: dict[str, FlatReply]  # the plain answers, read directly
    writers: dict[str, FlatRequest]  # the plain requests, rendered from templates


_documents: dict[str, object] = {}
_soaps: dict[str, Soap] = {}
_clients: dict[tuple, "EccClient"] = {}
_clients_lock = threading.Lock()


def load_wsdl(path: str | None = None):
    """Parse a WSDL once per process (offline) and return zeep's document."""
    from zeep.wsdl import Document

    path = path or wsdl_path()
    with _clients_lock:
        if path not in _documents:
            _documents[path] = Document(path, ClosedNetworkTransport(*_timeouts()))
        return _documents[path]


def _soap(wsdl: str | None = None) -> Soap:
    """zeep's side of the ECC calls, one per WSDL in a process.

    Building a request and reading an answer need the WSDL's binding, not the server: a
    service proxy of each server's own was most of a first call's CPU, and every worker
    process meets every server of a large DAQ in its first runs.
    """
    from zeep import Client, Settings

    path = wsdl or wsdl_path()
    found = _soaps.get(path)
    if found is None:
        client = Client(load_wsdl(path), transport=ClosedNetworkTransport(*_timeouts()),
                        settings=Settings(strict=True, xml_huge_tree=False))
        # The address is not in the requests it builds: each EccClient posts to its own.
        binding = client.wsdl.bindings[BINDING]
        service = client.create_service(BINDING, "http://ecc.invalid/")
        operations = binding.all()
        built = Soap(client, service, binding,
                     {name: FlatReply(operation) for name, operation in operations.items()},
                     {name: FlatRequest(client, service, name, operation)
                      for name, operation in operations.items()})
        with _clients_lock:
            found = _soaps.setdefault(path, built)
    return found


class EccClient:
    """A SOAP client for one ECC server. Every call raises EccError on any failure."""

    def __init__(self, name: str, url: str, wsdl: str | None = None,
                 connect_timeout: float | None = None, read_timeout: float | None = None):
        default_connect, default_read = _timeouts()
        self.name, self.url = name, url
        # Its own connections (a few kept alive), on zeep's shared request builder.
        self._transport = ClosedNetworkTransport(connect_timeout or default_connect,
                                                 read_timeout or default_read)
        self._soap = _soap(wsdl)

    def _request(self, operation: str, arguments: dict[str, str]) -> bytes:
        """The request for ``operation`` with these fields: from the operation's template,
        or built by zeep where the template cannot render it."""
        request = self._soap.writers[operation].render(arguments)
        if request is None:
            request = etree.tostring(self._soap.zeep.create_message(self._soap.service,
                                                                    operation, **arguments))
        return request

    def _call(self, operation: str, **arguments: str):
        """Post an operation's request and read its answer with zeep; EccError on any
        failure, with what an operator can act on."""
        from zeep.exceptions import Error as ZeepError

        try:
            soap = self._soap.binding.get(operation)
        except ValueError as exc:  # an operation this server's WSDL does not have
            raise EccError(self.name, operation, f"SOAP error: {exc}") from None
        try:
            headers = {"SOAPAction": f'"{soap.soapaction or ""}"',
                       "Content-Type": "text/xml; charset=utf-8"}
            reply = self._transport.post(self.url, self._request(operation, arguments),
                                         headers)
            # The plain answers read directly; faults and anything unusual by zeep.
            response = (self._soap.readers[operation].read(reply.status_code,
                                                           reply.content_type, reply.content)
                        or self._soap.binding.process_reply(self._soap.zeep, soap, reply))
        except WireError as exc:
            raise EccError(self.name, operation, str(exc)) from None
        except ZeepError as exc:
            raise EccError(self.name, operation, f"SOAP error: {exc}") from None
        except etree.XMLSyntaxError as exc:
            raise EccError(self.name, operation, f"unreadable answer: {exc}") from None
        if response.ErrorCode != 0:
            raise EccError(self.name, operation, response.ErrorMessage or "no message",
                           code=response.ErrorCode)
        return response

    def get_state(self) -> StateReport:
        """Ask the server for its state and whether a transition is under way."""
        response = self._call("GetState")
        return StateReport(state=int(response.State), transition=int(response.Transition))

    def transition(self, operation: str, config: ConfigId, links: Iterable[DataLink]) -> str:
        """Send a transition; returns when the server has accepted it (not done it)."""
        if operation not in tuple(Operation):
            raise ValueError(f"unknown transition {operation!r}")
        response = self._call(operation, configID=config_id_xml(config),
                              table=data_link_set_xml(links))
        return response.Text or ""

    def get_config_ids(self) -> list[ConfigId]:
        """The configs the server knows (its describe/prepare/configure files)."""
        return parse_config_ids(self._call("GetConfigIDs").Text or "<ConfigIds/>")


def client_for(name: str, url: str) -> EccClient:
    """The shared client for one ECC server, built on first use."""
    key = (name, url, wsdl_path(), _timeouts())
    client = _clients.get(key)
    if client is None:
        client = EccClient(name, url)
        with _clients_lock:
            client = _clients.setdefault(key, client)
    return client
