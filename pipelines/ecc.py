"""The ECC servers (getEccSoapServer): state machine facts, payload XML, SOAP client.

Everything daqflow knows about talking to an ECC server lives here. The client
is built on zeep from a WSDL that ships with daqflow (``pipelines/wsdl``) or,
with ``DAQFLOW_ECC_WSDL``, the one a deployment's servers ship. Nothing touches
the network at import time; clients are built on first use and reused per
ECC server.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Iterable
from urllib.parse import urlparse

from lxml import etree

WSDL_DIR = Path(__file__).parent / "wsdl"
DEFAULT_WSDL = WSDL_DIR / "ecc.wsdl"
BINDING = "{urn:ecc}ecc"


class EccState(IntEnum):
    """The ECC state machine's states, as GetState reports them."""

    IDLE = 1
    DESCRIBED = 2
    PREPARED = 3
    READY = 4
    RUNNING = 5


# operation -> (state it starts from, state it leads to); Undo goes one back.
TRANSITIONS: dict[str, tuple[EccState, EccState]] = {
    "Describe": (EccState.IDLE, EccState.DESCRIBED),
    "Prepare": (EccState.DESCRIBED, EccState.PREPARED),
    "Configure": (EccState.PREPARED, EccState.READY),
    "Start": (EccState.READY, EccState.RUNNING),
    "Stop": (EccState.RUNNING, EccState.READY),
    "Breakup": (EccState.READY, EccState.PREPARED),
}
UNDO_FROM = {EccState.PREPARED: EccState.DESCRIBED, EccState.DESCRIBED: EccState.IDLE}
TRANSITION_OPERATIONS = (*TRANSITIONS, "Undo")


def step_back(state: EccState) -> tuple[str, EccState] | None:
    """The operation that takes a server one step down from ``state``, and where to."""
    if state == EccState.RUNNING:
        return "Stop", EccState.READY
    if state == EccState.READY:
        return "Breakup", EccState.PREPARED
    if state in UNDO_FROM:
        return "Undo", UNDO_FROM[state]
    return None


def target_state(operation: str, current: EccState | None = None) -> EccState:
    """The state ``operation`` leads to (Undo needs the state it starts from)."""
    if operation == "Undo":
        if current not in UNDO_FROM:
            raise ValueError(f"Undo is not possible from state {current!r}")
        return UNDO_FROM[current]
    return TRANSITIONS[operation][1]


class EccError(Exception):
    """Any failure talking to an ECC server: error code, SOAP fault, timeout, refusal."""

    def __init__(self, server: str, operation: str, message: str, code: int | None = None):
        self.server, self.operation, self.message, self.code = server, operation, message, code
        where = f"ECC server {server}: {operation}"
        super().__init__(f"{where} failed: {message}" + (f" (error code {code})" if code else ""))


@dataclass(frozen=True)
class DataLink:
    """One source's data link: who sends, and which data router receives."""

    source: str
    router_name: str
    ip_address: str
    port: int
    type: str = "TCP"


@dataclass(frozen=True)
class ConfigId:
    """A config: the describe, prepare and configure file names."""

    describe: str
    prepare: str
    configure: str


@dataclass(frozen=True)
class StateReport:
    """What GetState said: the state, and whether a transition is under way."""

    state: int
    transition: int

    @property
    def settled(self) -> bool:
        return self.transition == 0


def config_id_xml(config: ConfigId) -> str:
    """The ``configID`` argument: the config as ``<ConfigId>`` XML text."""
    root = etree.Element("ConfigId")
    for kind in ("describe", "prepare", "configure"):
        etree.SubElement(root, "SubConfigId", type=kind).text = getattr(config, kind)
    return etree.tostring(root, encoding="unicode")


def parse_config_ids(text: str) -> list[ConfigId]:
    """Parse a ``<ConfigId>`` element, or a list of them as GetConfigIDs returns."""
    root = etree.fromstring(text.encode())
    nodes = [root] if root.tag == "ConfigId" else root.iter("ConfigId")
    configs = []
    for node in nodes:
        parts = {sub.get("type"): (sub.text or "") for sub in node.iter("SubConfigId")}
        configs.append(ConfigId(parts.get("describe", ""), parts.get("prepare", ""),
                                parts.get("configure", "")))
    return configs


def data_link_set_xml(links: Iterable[DataLink]) -> str:
    """The ``table`` argument: one ``<DataLink>`` per source of the server."""
    root = etree.Element("DataLinkSet")
    for link in links:
        node = etree.SubElement(root, "DataLink")
        etree.SubElement(node, "DataSender", id=link.source)
        etree.SubElement(node, "DataRouter", name=link.router_name, ipAddress=link.ip_address,
                         port=str(link.port), type=link.type)
    return etree.tostring(root, encoding="unicode")


def parse_data_link_set(text: str) -> list[DataLink]:
    """Parse a ``<DataLinkSet>`` back into data links."""
    root = etree.fromstring(text.encode())
    links = []
    for node in root.iter("DataLink"):
        sender, router = node.find("DataSender"), node.find("DataRouter")
        links.append(DataLink(sender.get("id"), router.get("name"), router.get("ipAddress"),
                              int(router.get("port")), router.get("type", "TCP")))
    return links


# --- SOAP client --------------------------------------------------------------------

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
                    "the network (DAQ networks are closed); add it to pipelines.ecc.LOCAL_SCHEMAS"
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
    return os.environ.get("DAQFLOW_ECC_WSDL") or str(DEFAULT_WSDL)


def _timeouts() -> tuple[float, float]:
    return (float(os.environ.get("DAQFLOW_ECC_CONNECT_TIMEOUT", "3")),
            float(os.environ.get("DAQFLOW_ECC_READ_TIMEOUT", "10")))


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
        if operation not in TRANSITION_OPERATIONS:
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


# --- driving one transition to its confirmed end -------------------------------------

def poll_delay(elapsed: float, expected: float) -> float:
    """Seconds to wait before the next GetState.

    Long waits while the transition cannot be done yet, short ones near its
    expected end: hundreds of servers are polled at once, and the operator's
    wait should overshoot the real end by only a few tens of milliseconds.
    """
    early = 0.8 * expected - elapsed
    if early > 0:
        return min(early, 1.0)
    return min(max(expected / 20, 0.02), 0.25)


def drive(client: EccClient, operation: str, target: EccState, config: ConfigId,
          links: list[DataLink], deadline_seconds: float, expected_seconds: float,
          on_progress=None, clock=None, sleep=None) -> bool:
    """Take a server through one transition and wait until it is confirmed.

    Idempotent: a server already settled in ``target`` succeeds at once without
    anything being sent (returns False); a server already moving to ``target``
    (a redelivered task) is only watched. Otherwise the operation is sent and
    GetState polled until ``Transition == 0`` and ``State == target``. Returns
    True when the operation was sent. Raises EccError on any failure, including
    the deadline (enforced here: thread pools ignore Celery's soft time limits).
    """
    import time

    clock, sleep = clock or time.monotonic, sleep or time.sleep
    started = clock()
    report = client.get_state()
    if report.settled and report.state == target:
        return False
    sent = False
    if report.settled or report.transition != target:
        client.transition(operation, config, links)
        sent = True
    while True:
        elapsed = clock() - started
        if on_progress:
            on_progress(elapsed, expected_seconds)
        if elapsed >= deadline_seconds:
            raise EccError(client.name, operation,
                           f"not confirmed within its deadline of {deadline_seconds:g} s "
                           f"(last seen: state {state_name(report.state)}, "
                           f"transition {report.transition})")
        sleep(min(poll_delay(elapsed, expected_seconds), max(deadline_seconds - elapsed, 0.01)))
        report = client.get_state()
        if report.settled:
            if report.state == target:
                return sent
            raise EccError(client.name, operation,
                           f"transition ended in state {state_name(report.state)}, "
                           f"not {target.name}")


def state_name(state: int | None) -> str:
    """A state's name for people: READY, ..., UNKNOWN when never seen, else the number."""
    if state is None:
        return "UNKNOWN"
    try:
        return EccState(state).name
    except ValueError:
        return str(state)
