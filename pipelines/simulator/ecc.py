"""A simulated GET DAQ: every ECC server of a topology as a real SOAP-over-HTTP server.

Transitions behave as on hardware: the operation is accepted at once and
``GetState`` reports ``Transition != 0`` until the transition's duration has
passed (a shared server works through its sources in series). Many servers can
share one port on distinct URL paths, so one process can play hundreds.

Tests and operators steer it over plain HTTP on any of its ports:

- ``GET  /_sim/log``     every request so far (time, server, operation), oldest first
- ``GET  /_sim/state``   each server's state and transition flag
- ``POST /_sim/faults``  inject a fault: ``{"server", "operation", "kind", ...}``
  where kind is ``error`` (``code``, ``message``), ``hang`` (the transition never
  ends), ``slow`` (the answer, made at once, arrives after ``seconds``) or ``refuse``
  (the server's port closes);
  ``times`` limits how often it fires
- ``DELETE /_sim/faults`` clear faults;  ``POST /_sim/reset`` everything back to IDLE
- ``POST /_sim/set``     ``{"server", "state"}`` or ``{"seconds_per_source": s}``, for
  every server or, with ``"servers": [names]``, for those
- ``POST /_sim/processes`` ``{"name": "dataRouter" | "getEccSoapServer", "running": bool}``:
  stop a placeholder process (the program died) or bring it back

``daqflow simulate`` also plays the data routers (see ``simulator.routers``).
"""
from __future__ import annotations

import gc
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

from lxml import etree

from pipelines.daq.ecc.payloads import ConfigId, parse_config_ids, parse_data_link_set
from pipelines.daq.ecc.states import TRANSITIONS, UNDO_FROM, EccState, Operation
from pipelines.simulator.http import SOAP_ENV, Wire, soap_response
from pipelines.topology.loading import ecc_dirs
from pipelines.topology.schema import Topology, TopologyError

FAULT_KINDS = ("error", "hang", "slow", "refuse")


@dataclass
class Fault:
    kind: str
    operation: str = "*"
    code: int = 1
    message: str = "simulated failure"
    seconds: float = 0.0
    times: int | None = None

    def matches(self, operation: str) -> bool:
        return self.operation in ("*", operation) and (self.times is None or self.times > 0)

    def fire(self) -> None:
        if self.times is not None:
            self.times -= 1


@dataclass
class SimulatedServer:
    """One ECC server's state machine; transitions finish lazily when time has passed."""

    name: str
    sources: list[str]
    seconds_per_source: float
    configs: list[str]
    # Where its .xcfg files are: GetConfigIDs lists the configs whose three files are there.
    config_dir: Path | None = None
    state: int = EccState.IDLE
    target: int | None = None
    done_at: float = 0.0
    hanging: bool = False
    faults: list[Fault] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def settle(self, now: float) -> None:
        if self.target is not None and not self.hanging and now >= self.done_at:
            self.state, self.target = self.target, None

    def offered(self) -> list[str]:
        """The configs it offers: those with describe-, prepare- and configure-<name>.xcfg in
        its config directory (the topology's configs when it has none)."""
        if self.config_dir is None:
            return list(self.configs)
        try:
            names = {path.name for path in self.config_dir.iterdir()}
        except OSError:
            return []
        found = {name[len("describe-"):-len(".xcfg")] for name in names
                 if name.startswith("describe-") and name.endswith(".xcfg")}
        return sorted(n for n in found
                      if f"prepare-{n}.xcfg" in names and f"configure-{n}.xcfg" in names)

    def fault(self, operation: str, kinds: tuple[str, ...]) -> Fault | None:
        for fault in self.faults:
            if fault.kind in kinds and fault.matches(operation):
                fault.fire()
                return fault
        return None


@lru_cache(maxsize=64)
def first_config(text: str) -> ConfigId:
    """The first config of a configID argument: every server of a run is sent the same
    one, read once here (twice for each transition was a fifth of the simulator's CPU)."""
    return parse_config_ids(text)[0]


def _config_dir(topology: Topology, spec) -> Path | None:
    """A server's config directory on this machine, if the topology gives it one."""
    try:
        config_dir, _ = ecc_dirs(topology, spec) if spec.node else (None, None)
    except TopologyError:
        return None
    return Path(config_dir) if config_dir else None


class Simulator:
    """The simulated ECC servers of one topology, and the HTTP servers that serve them."""

    def __init__(self, topology: Topology, seconds_per_source: float | None = None,
                 host_override: str | None = None):
        per_source = (topology.simulator.seconds_per_source if seconds_per_source is None
                      else seconds_per_source)
        configs = [c.describe for c in topology.configs]
        self.servers: dict[str, SimulatedServer] = {}
        self.routes: dict[tuple[str, int], dict[str, SimulatedServer]] = {}
        for spec in topology.ecc_servers:
            url = urlparse(spec.url)
            server = SimulatedServer(spec.name, list(spec.sources), per_source, configs,
                                     config_dir=_config_dir(topology, spec))
            self.servers[spec.name] = server
            address = (host_override or url.hostname, url.port)
            self.routes.setdefault(address, {})[url.path.rstrip("/") or "/"] = server
        self.log: deque = deque(maxlen=200_000)
        self.log_lock = threading.Lock()
        self.wire: Wire | None = None  # listening once ``serve`` has run
        self.echo = False
        self.routers = None  # SimulatedRouters, when ``run`` plays them

    # --- the ECC operations ---------------------------------------------------------

    def answer_soap(self, server: SimulatedServer, body: bytes) -> tuple[str, float]:
        """A SOAP request's answer, and how many seconds late it is to arrive (a slow
        fault)."""
        envelope = etree.fromstring(body)
        request = envelope.find(f"{{{SOAP_ENV}}}Body")[0]
        operation = etree.QName(request).localname
        args = {etree.QName(child).localname: (child.text or "") for child in request}
        self.record(server.name, operation, args.get("configID"))
        slow = server.fault(operation, ("slow",))
        with server.lock:
            answer = self._operate(server, operation, args)
        # Made at once, late to arrive: by then a GetState's word may be stale.
        return answer, slow.seconds if slow else 0.0

    def _operate(self, server: SimulatedServer, operation: str, args: dict) -> str:
        server.settle(time.monotonic())
        if operation == "GetState":
            transition = 0 if server.target is None else server.target
            return soap_response("ResponseState", 0, "", State=server.state, Transition=transition)
        if operation == "GetConfigIDs":
            ids = "".join(
                f'<ConfigId><SubConfigId type="describe">{n}</SubConfigId>'
                f'<SubConfigId type="prepare">{n}</SubConfigId>'
                f'<SubConfigId type="configure">{n}</SubConfigId></ConfigId>'
                for n in server.offered())
            return soap_response("ResponseText", 0, "", Text=f"<ConfigIdList>{ids}</ConfigIdList>")
        if operation == "ServerExit":
            return soap_response("Response", 0, "")
        if operation not in TRANSITIONS and operation != Operation.UNDO:
            return soap_response("ResponseText", 9, f"operation {operation} not supported", Text="")
        error = server.fault(operation, ("error",))
        if error:
            return soap_response("ResponseText", error.code, error.message, Text="")
        problem = self._refusal(server, operation, args)
        if problem:
            return soap_response("ResponseText", 2, problem, Text="")
        target = (UNDO_FROM[EccState(server.state)] if operation == Operation.UNDO
                  else TRANSITIONS[operation][1])
        server.target = int(target)
        server.hanging = server.fault(operation, ("hang",)) is not None
        server.done_at = time.monotonic() + server.seconds_per_source * len(server.sources)
        return soap_response("ResponseText", 0, "", Text="")

    @staticmethod
    def _refusal(server: SimulatedServer, operation: str, args: dict) -> str | None:
        if server.target is not None:
            return f"a transition to state {server.target} is under way"
        if operation == Operation.UNDO:
            if server.state not in UNDO_FROM:
                return f"Undo is not possible in state {EccState(server.state).name}"
        elif server.state != TRANSITIONS[operation][0]:
            return (f"{operation} needs state {TRANSITIONS[operation][0].name}, "
                    f"server is {EccState(server.state).name}")
        try:
            config = first_config(args.get("configID", ""))
            links = parse_data_link_set(args.get("table", ""))
        except (etree.XMLSyntaxError, IndexError, AttributeError, TypeError, ValueError):
            return "malformed configID or table"
        if config.describe not in server.offered():
            return f"unknown config {config.describe!r}"
        senders = sorted(link.source for link in links)
        if senders != sorted(server.sources):
            return (f"data links name {', '.join(senders) or 'no source'}; this server "
                    f"drives {', '.join(server.sources)}")
        return None

    def record(self, server: str, operation: str, config_xml: str | None = None) -> None:
        """Log a request; a transition's entry says which config (its describe name) it sent."""
        stamp = datetime.now(timezone.utc).isoformat()
        entry = {"time": stamp, "server": server, "operation": operation}
        if config_xml:
            try:
                entry["config"] = first_config(config_xml).describe
            except (etree.XMLSyntaxError, IndexError, ValueError):
                entry["config"] = None
        with self.log_lock:
            self.log.append(entry)
        if self.echo and operation != "GetState":
            print(f"{stamp} {server} {operation}", flush=True)

    # --- control ------------------------------------------------------------------

    def control(self, method: str, path: str, payload: dict) -> tuple[int, object]:
        if method == "GET" and path == "/_sim/log":
            with self.log_lock:
                return 200, list(self.log)
        if method == "GET" and path == "/_sim/state":
            now = time.monotonic()
            out = {}
            for server in self.servers.values():
                with server.lock:
                    server.settle(now)
                    out[server.name] = {"state": server.state,
                                        "transition": 0 if server.target is None else server.target}
            return 200, out
        if method == "POST" and path == "/_sim/reset":
            for server in self.servers.values():
                with server.lock:
                    server.state, server.target, server.hanging = EccState.IDLE, None, False
                    server.faults.clear()
            self.reopen_all()
            if self.routers is not None:
                self.routers.reset()
            with self.log_lock:
                self.log.clear()
            return 200, {"reset": True}
        if method == "POST" and path == "/_sim/faults":
            return self._add_fault(payload)
        if method == "DELETE" and path == "/_sim/faults":
            for server in self.servers.values():
                server.faults.clear()
                server.hanging = False
            self.reopen_all()
            return 200, {"cleared": True}
        if method == "POST" and path == "/_sim/set":
            return self._set(payload)
        if method == "POST" and path == "/_sim/processes" and self.routers is not None:
            if payload.get("name") not in self.routers.processes:
                return 404, {"error": f"no simulated process {payload.get('name')!r}"}
            self.routers.set_process(payload["name"], bool(payload.get("running")))
            return 200, {"processes": payload}
        return 404, {"error": f"no control endpoint {method} {path}"}

    def _add_fault(self, payload: dict) -> tuple[int, object]:
        server = self.servers.get(payload.get("server"))
        if server is None:
            return 404, {"error": f"no simulated ECC server {payload.get('server')!r}"}
        if payload.get("kind") not in FAULT_KINDS:
            return 400, {"error": f"kind must be one of {', '.join(FAULT_KINDS)}"}
        fault = Fault(kind=payload["kind"], operation=payload.get("operation", "*"),
                      code=int(payload.get("code", 1)),
                      message=str(payload.get("message", "simulated failure")),
                      seconds=float(payload.get("seconds", 0)), times=payload.get("times"))
        server.faults.append(fault)
        if fault.kind == "refuse":
            self.close_port_of(server)
        return 200, {"added": payload}

    def _set(self, payload: dict) -> tuple[int, object]:
        if "router_writes" in payload and self.routers is not None:
            # {"files_per_run", "interval", "file_bytes"}: how the routers write while running.
            self.routers.set_writes(**payload["router_writes"])
        if "router_writing" in payload and self.routers is not None:
            # {router name: false} stops one writing (its program hangs), true resumes it.
            for name, writing in payload["router_writing"].items():
                if not self.routers.set_writing(name, bool(writing)):
                    return 404, {"error": f"no simulated data router {name!r}"}
        if "router_fill" in payload and self.routers is not None:
            # {router name: bytes}: one file that big in its staging (0 removes it), which
            # fills a router's staging quota as a full disk would.
            for name, size in payload["router_fill"].items():
                if not self.routers.fill(name, int(size)):
                    return 404, {"error": f"no simulated data router {name!r}"}
        if "seconds_per_source" in payload:
            names = payload.get("servers", list(self.servers))
            unknown = [name for name in names if name not in self.servers]
            if unknown:
                return 404, {"error": f"no simulated ECC server {unknown[0]!r}"}
            for name in names:
                self.servers[name].seconds_per_source = float(payload["seconds_per_source"])
        if "server" in payload:
            names = list(self.servers) if payload["server"] == "*" else [payload["server"]]
            for name in names:
                server = self.servers.get(name)
                if server is None:
                    return 404, {"error": f"no simulated ECC server {name!r}"}
                with server.lock:
                    server.state, server.target = int(payload["state"]), None
        return 200, {"set": payload}

    # --- HTTP ---------------------------------------------------------------------

    def serve(self, control_port: int | None = None) -> None:
        """Listen on every address (and an optional control-only port), served by one
        event loop in a background thread."""
        if self.wire is None:
            self.wire = Wire(self)
        for address in self.routes:
            self.wire.open(address)
        if control_port:
            self.wire.open(("127.0.0.1", control_port))

    def close_port_of(self, server: SimulatedServer) -> None:
        for address, paths in self.routes.items():
            if server in paths.values() and self.wire is not None:
                self.wire.close(address)

    def reopen_all(self) -> None:
        if self.wire is not None:
            for address in self.routes:
                self.wire.open(address)

    def shutdown(self) -> None:
        if self.wire is not None:
            self.wire.shutdown()
            self.wire = None


def run(topology: Topology, control_port: int | None = None,
        seconds_per_source: float | None = None) -> None:
    """Serve a topology's ECC servers until interrupted (``daqflow simulate``)."""
    from pipelines.simulator.routers import SimulatedRouters

    sim = Simulator(topology, seconds_per_source=seconds_per_source)
    sim.echo = True
    sim.routers = SimulatedRouters(sim, topology)
    sim.routers.start()
    sim.serve(control_port)
    for (host, port), paths in sim.routes.items():
        names = ", ".join(s.name for s in paths.values())
        print(f"simulating {names} on http://{host}:{port}", flush=True)
    # Hundreds of servers' objects, built once: left out of later garbage collections, whose
    # full walks of them would stall every answer for tens of milliseconds.
    gc.collect()
    gc.freeze()
    print("simulator ready", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        sim.routers.shutdown()
        sim.shutdown()
        sys.stdout.flush()
