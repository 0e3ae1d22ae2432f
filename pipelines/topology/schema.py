"""The DAQ topology file: what an operator writes to describe the DAQ, validated.

``daqflow topology load FILE`` parses and validates the TOML file completely
before it writes anything (``loading``); a bad file gets one error that names the
line (TOML syntax) or the key (everything else), and the database is left as it was.
"""
from __future__ import annotations

import posixpath
import re
import tomllib
from pathlib import Path, PurePosixPath
from typing import Literal, Optional
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

NAME = r"^[^\x00-\x1f\x7f-\x9f]{1,200}$"
# A name that becomes a folder or file name on a node: anything but a path separator.
PATH_PART = r"^(?!\.\.?$)[^\x00-\x1f\x7f-\x9f/]{1,200}$"


class TopologyError(ValueError):
    """A topology file that cannot be used; the message names the line or key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# Seconds a transition may be given: finite and at most a day (the run-control lock's
# expiry is computed from the longest).
SECONDS = dict(gt=0, le=86400, allow_inf_nan=False)
# Printable text on one line: hosts, users, key files, directories.
ONE_LINE = r"^[^\x00-\x1f\x7f-\x9f]+$"


def _directory(value: str | None) -> str | None:
    """A directory on a node: one printable line; a relative one stays inside the instance
    folder (no ``..``)."""
    if value is None:
        return value
    if not re.fullmatch(ONE_LINE, value):
        raise ValueError("must be one line of printable characters")
    if not PurePosixPath(value).is_absolute() and ".." in PurePosixPath(value).parts:
        raise ValueError(f"{value!r}: a relative directory may not leave the instance folder "
                         "(no '..')")
    return value


def _path_part(value: str) -> str:
    if not re.fullmatch(PATH_PART, value):
        raise ValueError(f"{value!r} becomes a folder or file name on the DAQ nodes: it must be "
                         "1-200 characters, without '/' or control characters, and not . or ..")
    return value


class ExperimentSpec(_Strict):
    name: str
    config: Optional[str] = None
    # Re-arm the MuTAnT (Breakup, Configure) before each start (attpc_envoy's way).
    rearm_mutant_on_start: bool = True
    # The next run's number, to continue another DAQ's numbering; never one recorded already.
    next_run: Optional[int] = Field(default=None, ge=0, le=9999)

    _name = field_validator("name")(_path_part)


class ConfigSpec(_Strict):
    name: str = Field(pattern=NAME)
    describe: str
    prepare: str
    configure: str

    _files = field_validator("describe", "prepare", "configure")(_path_part)


class Defaults(_Strict):
    transition_timeout: float = Field(default=120.0, **SECONDS)
    expected_seconds: float = Field(default=5.0, **SECONDS)
    # Where ECC servers keep their .xcfg files, and where a stop backs them up.
    config_dir: Optional[str] = Field(default=None, min_length=1)
    backup_dir: Optional[str] = Field(default=None, min_length=1)

    _dirs = field_validator("config_dir", "backup_dir")(_directory)


class SimulatorSpec(_Strict):
    seconds_per_source: float = Field(default=2.0, ge=0, le=3600, allow_inf_nan=False)


class NodeSpec(_Strict):
    name: str = Field(pattern=NAME)
    # No host: this machine, driven without SSH (see daq.nodes.connection.is_this_machine).
    host: Optional[str] = Field(default=None, pattern=ONE_LINE)
    user: Optional[str] = Field(default=None, pattern=ONE_LINE)
    port: Optional[int] = Field(default=None, ge=1, le=65535)
    key: Optional[str] = Field(default=None, pattern=ONE_LINE)

    @model_validator(mode="after")
    def _ssh_needs_a_host(self) -> "NodeSpec":
        given = [name for name in ("user", "port", "key") if getattr(self, name) is not None]
        if given and self.host is None:
            raise ValueError(f"{', '.join(given)} without a host: a node without a host is "
                             "this machine, driven without SSH; give its host to reach it by SSH")
        return self


class EccServerSpec(_Strict):
    name: str = Field(pattern=NAME)
    url: str
    node: Optional[str] = None
    sources: list[str] = Field(min_length=1)
    transition_timeout: Optional[float] = Field(default=None, **SECONDS)
    expected_seconds: Optional[float] = Field(default=None, **SECONDS)
    config_dir: Optional[str] = Field(default=None, min_length=1)
    backup_dir: Optional[str] = Field(default=None, min_length=1)

    _dirs = field_validator("config_dir", "backup_dir")(_directory)

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname or not parsed.port:
            raise ValueError("must be an http:// URL with host and port, "
                             "like http://daq1:8083/")
        return url

    @field_validator("sources")
    @classmethod
    def _source_names(cls, names: list[str]) -> list[str]:
        for name in names:
            if not re.fullmatch(NAME, name):
                raise ValueError(f"bad source name {name!r}")
        return names


class DataRouterSpec(_Strict):
    name: str = Field(pattern=NAME)
    node: str
    source: str
    ip_address: str = Field(min_length=1)
    port: int = Field(default=46005, ge=1, le=65535)
    type: Literal["TCP", "FDT", "ICE", "ZBUF"] = "TCP"
    staging_dir: str = Field(min_length=1)
    # The space this router may fill on a shared staging disk: its free space is then the
    # smaller of the filesystem's and what is left of this.
    staging_quota_gb: Optional[float] = Field(default=None, gt=0)

    _dirs = field_validator("staging_dir")(_directory)


class RunFieldSpec(_Strict):
    """A custom run field (attpc-daq's "observables"): asked for by the start or stop form."""

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9 _.()/-]{0,63}$")
    type: Literal["number", "text", "choice"] = "text"
    # A number's unit, shown beside it ("pps", "Torr").
    unit: str = Field(default="", max_length=32, pattern=r"^[^\x00-\x1f\x7f-\x9f]*$")
    choices: list[str] = Field(default_factory=list, max_length=50)
    asked_at: Literal["start", "stop"] = "start"
    required: bool = False

    @model_validator(mode="after")
    def _choices_for_choice_only(self) -> "RunFieldSpec":
        if self.type == "choice" and not self.choices:
            raise ValueError(f"{self.name}: a choice field needs its choices")
        if self.type != "choice" and self.choices:
            raise ValueError(f"{self.name}: only a choice field has choices")
        if self.unit and self.type != "number":
            raise ValueError(f"{self.name}: only a number field has a unit")
        for choice in self.choices:
            if not re.fullmatch(r"[^\x00-\x1f\x7f-\x9f]{1,100}", choice):
                raise ValueError(f"{self.name}: choices are 1-100 printable characters")
        if len(set(self.choices)) != len(self.choices):
            raise ValueError(f"{self.name}: a choice appears twice")
        return self


AlarmKindName = Literal["ecc_offline", "process_down", "rate_low", "disk_low",
                        "workflow_failed", "run_overdue", "automation_failed"]


class AlarmsSpec(_Strict):
    """When the shift is woken: thresholds and delays, and who is emailed."""

    # Below this write rate (MB/s) for rate_delay_seconds while a run is going: "no data".
    rate_min_mb_per_s: float = Field(default=0.001, ge=0, allow_inf_nan=False)
    rate_delay_seconds: float = Field(default=60.0, gt=0, le=86400, allow_inf_nan=False)
    # Less free space (GB) than this on a staging directory's filesystem.
    disk_free_min_gb: float = Field(default=10.0, ge=0, allow_inf_nan=False)
    # A run still going this long (s) after its planned length: the stop at the limit did
    # not happen or hangs.
    overdue_seconds: float = Field(default=120.0, gt=0, le=86400, allow_inf_nan=False)
    # Recipients of every alarm, and more per alarm kind (ecc_offline, process_down,
    # rate_low, disk_low, workflow_failed, run_overdue, automation_failed).
    email: list[str] = Field(default_factory=list, max_length=50)
    email_per_kind: dict[AlarmKindName, list[str]] = Field(default_factory=dict)
    # Alarm kinds that also stop the run that is going (an audited stop workflow). Not
    # workflow_failed: a stop that failed would start the next stop, and so on.
    stop_run_on: list[Literal["ecc_offline", "process_down", "rate_low", "disk_low",
                              "run_overdue"]] = Field(default_factory=list)

    @field_validator("email")
    @classmethod
    def _addresses(cls, addresses: list[str]) -> list[str]:
        for address in addresses:
            if not re.fullmatch(r"[^@\s]+@[^@\s]+", address):
                raise ValueError(f"{address!r} is not an email address")
        return addresses


class Topology(_Strict):
    """A whole topology file, validated."""

    experiment: ExperimentSpec
    configs: list[ConfigSpec] = Field(min_length=1)
    defaults: Defaults = Defaults()
    simulator: SimulatorSpec = SimulatorSpec()
    nodes: list[NodeSpec] = Field(default_factory=list)
    ecc_servers: list[EccServerSpec] = Field(min_length=1)
    data_routers: list[DataRouterSpec] = Field(default_factory=list)
    # Asked for at every run's start or stop, kept in the run log.
    run_fields: list[RunFieldSpec] = Field(default_factory=list, max_length=100)
    alarms: AlarmsSpec = AlarmsSpec()

    def active_config(self) -> ConfigSpec:
        name = self.experiment.config or self.configs[0].name
        return next(c for c in self.configs if c.name == name)


def _key(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _unique(items, kind: str, field: str = "name") -> set[str]:
    seen: set[str] = set()
    for i, item in enumerate(items):
        value = getattr(item, field)
        if value in seen:
            raise TopologyError(f"{kind}[{i}].{field}: {value!r} appears twice")
        seen.add(value)
    return seen


def _check_references(topo: Topology) -> None:
    _unique(topo.configs, "configs")
    nodes = _unique(topo.nodes, "nodes")
    _unique(topo.ecc_servers, "ecc_servers")
    _unique(topo.data_routers, "data_routers")
    _unique(topo.run_fields, "run_fields")
    if topo.experiment.config and topo.experiment.config not in {c.name for c in topo.configs}:
        raise TopologyError(f"experiment.config: no config named {topo.experiment.config!r}")
    sources: set[str] = set()
    for i, server in enumerate(topo.ecc_servers):
        if server.node is not None and server.node not in nodes:
            raise TopologyError(f"ecc_servers[{i}].node: no node named {server.node!r}")
        for name in server.sources:
            if name in sources:
                raise TopologyError(f"ecc_servers[{i}].sources: source {name!r} is "
                                    "driven by two ECC servers")
            sources.add(name)
    routed: set[str] = set()
    for i, router in enumerate(topo.data_routers):
        if router.node not in nodes:
            raise TopologyError(f"data_routers[{i}].node: no node named {router.node!r}")
        if router.source not in sources:
            raise TopologyError(f"data_routers[{i}].source: no ECC server drives {router.source!r}")
        if router.source in routed:
            raise TopologyError(f"data_routers[{i}].source: {router.source!r} has two routers")
        routed.add(router.source)
    staging: dict[tuple[str, str], str] = {}
    for i, router in enumerate(topo.data_routers):
        # Two routers in one directory would each organize the other's files.
        where = (router.node, posixpath.normpath(router.staging_dir))
        if where in staging:
            raise TopologyError(f"data_routers[{i}].staging_dir: {router.name} and "
                                f"{staging[where]} share the staging directory "
                                f"{router.staging_dir!r} on node {router.node!r}; each router "
                                "needs its own")
        staging[where] = router.name
    missing = sorted(sources - routed) if topo.data_routers else []
    if missing:
        raise TopologyError(f"data_routers: no data router for source(s) {', '.join(missing)}")


def parse(text: str, origin: str = "topology") -> Topology:
    """Parse and validate a topology; raises TopologyError naming the line or key."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TopologyError(f"{origin}: not valid TOML: {exc}") from None
    except RecursionError:
        raise TopologyError(f"{origin}: not valid TOML: nested too deeply") from None
    try:
        topo = Topology.model_validate(raw)
    except RecursionError:
        raise TopologyError(f"{origin}: nested too deeply for a topology") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        message = first["msg"].removeprefix("Value error, ")
        more = f" (and {exc.error_count() - 1} more problem(s))" if exc.error_count() > 1 else ""
        raise TopologyError(f"{origin}: {_key(first['loc'])}: {message}{more}") from None
    try:
        _check_references(topo)
    except TopologyError as exc:
        raise TopologyError(f"{origin}: {exc}") from None
    return topo


def read(path: str | Path) -> Topology:
    """Read and validate a topology file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TopologyError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise TopologyError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    return parse(text, origin=str(path))
