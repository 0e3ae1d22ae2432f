"""The SOAP client of an ECC server (getEccSoapServer), built on zeep.

The WSDL ships with daqflow (``wsdl/``) or, with ``DAQFLOW_ECC_WSDL``, is the one a
deployment's servers ship; it is loaded offline. Nothing touches the network at
import time; clients are built on first use and reused per ECC server.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable
from urllib.parse import urlparse

from lxml import etree

from models import settings
from pipelines.daq.ecc.payloads import (
    ConfigId,
    DataLink,
    config_id_xml,
    data_link_set_xml,
    parse_config_ids,
)
from pipelines.daq.ecc.states import Operation

WSDL_DIR = Path(__file__).parent / "wsdl"
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


# Schemas that ECC WSDLs import by URL, answered from disk: DAQ networks are closed.
LOCAL_SCHEMAS = {
    "http://schemas.xmlsoap.org/soap/encoding/": WSDL_DIR / "soap-encoding.xsd",
}


def _closed_network_transport(connect_timeout: float, read_timeout: float):
    """A zeep transport that loads WSDL and schemas only from disk."""
    from requests.adapters import HTTPAdapter
    from zeep.transports import Transport

    class ClosedNetworkTransport(Transport):
        def load(self, url):
            local = LOCAL_SCHEMAS.get(url) or LOCAL_SCHEMAS.get(url.rstrip("/") + "/")
            if local is not None:
                return local.read_bytes()
            if urlparse(url).scheme in ("http", "https"):
                raise OSError(
                    f"the WSDL refers to {url}, and daqflow does not fetch schemas over "
                    "the network (DAQ networks are closed); add it to "
                    "pipelines.daq.ecc.client.LOCAL_SCHEMAS"
                )
            return super().load(url)

    # Operations get a (connect, read) timeout; requests takes the pair as is.
    transport = ClosedNetworkTransport(operation_timeout=(connect_timeout, read_timeout))
    # One connection per ECC server is enough; keep it alive between polls.
    transport.session.mount("http://", HTTPAdapter(pool_connections=1, pool_maxsize=4))
    # ECC servers sit on the DAQ network: no proxy or .netrc applies, and looking them up
    # in the environment on every call cost a third of a GetState's CPU time.
    transport.session.trust_env = False
    return transport


def wsdl_path() -> str:
    """The WSDL in use: ``DAQFLOW_ECC_WSDL`` if set, else the one daqflow ships."""
    return str(settings.ECC_WSDL.get() or DEFAULT_WSDL)


def _timeouts() -> tuple[float, float]:
    return settings.ECC_CONNECT_TIMEOUT.get(), settings.ECC_READ_TIMEOUT.get()


_documents: dict[str, object] = {}
_clients: dict[tuple, "EccClient"] = {}
_clients_lock = threading.Lock()


def load_wsdl(path: str | None = None):
    """Parse a WSDL once per process (offline) and return zeep's document."""
    from zeep.wsdl import Document

    path = path or wsdl_path()
    with _clients_lock:
        if path not in _documents:
            _documents[path] = Document(path, _closed_network_transport(*_timeouts()))
        return _documents[path]


class EccClient:
    """A SOAP client for one ECC server. Every call raises EccError on any failure."""

    def __init__(self, name: str, url: str, wsdl: str | None = None,
                 connect_timeout: float | None = None, read_timeout: float | None = None):
        from zeep import Client, Settings

        default_connect, default_read = _timeouts()
        self.name, self.url = name, url
        transport = _closed_network_transport(connect_timeout or default_connect,
                                              read_timeout or default_read)
        client = Client(load_wsdl(wsdl), transport=transport,
                        settings=Settings(strict=True, xml_huge_tree=False))
        self._zeep = client
        self._service = client.create_service(BINDING, url)

    def _call(self, operation: str, **kwargs):
        import requests
        from zeep.exceptions import Error as ZeepError

        try:
            response = getattr(self._service, operation)(**kwargs)
        except requests.exceptions.ConnectTimeout:
            raise EccError(self.name, operation, f"no connection to {self.url} (timed out)") from None
        except requests.exceptions.ReadTimeout:
            raise EccError(self.name, operation, f"no answer from {self.url} in time") from None
        except requests.exceptions.ConnectionError as exc:
            reason = "connection refused" if "refused" in str(exc).lower() else "connection failed"
            raise EccError(self.name, operation, f"{reason} at {self.url}") from None
        except requests.exceptions.RequestException as exc:
            raise EccError(self.name, operation, f"HTTP error: {exc}") from None
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
