"""The DAQ as configured: experiment, runs, configs, nodes, ECC servers, sources, routers."""
from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import JSON, BigInteger, Column, UniqueConstraint
from sqlmodel import Field, SQLModel, select

from models.columns import timestamp
from models.vocabulary import RunClass


# An experiment and its run counter; exactly one is active at a time.
class Experiment(SQLModel, table=True):
    id: Optional[int] = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True, max_length=200)
    active: bool = Field(default=False)
    # Number of the last run recorded; the next run gets last_run_number + 1. It never
    # goes back: a run number is never used twice.
    last_run_number: int = Field(default=-1)
    # Re-arm the MuTAnT (Breakup, Configure) before each start, so event numbers and
    # timestamps restart with every run.
    rearm_mutant_on_start: bool = Field(default=True)
    # The topology's [alarms]: thresholds, delays and who is emailed (None: the defaults).
    alarm_settings: Optional[dict] = Field(default=None, sa_column=Column(JSON, nullable=True))


def active_experiment(s) -> Optional[Experiment]:
    """The experiment runs are recorded in now (the last topology loaded), if any."""
    return s.exec(select(Experiment).where(Experiment.active == True)).first()  # noqa: E712


# One run of an experiment, recorded only once its sources confirmed the start.
class Run(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("experiment_id", "number"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    experiment_id: int = Field(foreign_key="experiment.id", index=True)
    number: int
    title: str = Field(default="", max_length=500)
    run_class: str = Field(default=RunClass.TEST.value, max_length=8)
    config_name: str = Field(default="", max_length=200)
    started_at: Optional[datetime] = timestamp()
    stopped_at: Optional[datetime] = timestamp()
    # When every data router's files of this run were organized (None: not yet).
    files_organized_at: Optional[datetime] = timestamp()
    # Who asked for the start and for the stop (account name, or cli:<login>).
    started_by: str = Field(default="", max_length=80)
    stopped_by: str = Field(default="", max_length=80)
    # The operator's comment at start, and the current note (RunNote keeps every version).
    comment: str = Field(default="", max_length=1000)
    note: str = Field(default="", max_length=4000)
    # The config each ECC server used, by server name (its config's name).
    server_configs: dict = Field(default_factory=dict, sa_column=Column(
        JSON, nullable=False, server_default="{}"))
    # Custom run fields (RunField) by name: a number, or text.
    fields: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False,
                                                                 server_default="{}"))
    # Its planned length: daqflow stops it after so many seconds, or once the data routers
    # hold so many bytes of it (None: no limit); and whether it then starts the next run.
    planned_seconds: Optional[float] = Field(default=None)
    planned_bytes: Optional[int] = Field(default=None, sa_column=Column(BigInteger,
                                                                        nullable=True))
    auto_restart: bool = Field(default=False)
    # When daqflow launched the stop at the limit, and claimed the automatic restart: each
    # is done once, whatever timer message comes twice or late.
    limit_reached_at: Optional[datetime] = timestamp()
    restarted_at: Optional[datetime] = timestamp()
    # Why daqflow could not stop it at its limit or start the next run (the chain ends).
    automation_error: Optional[str] = Field(default=None, max_length=2000)

    @property
    def duration_seconds(self) -> Optional[float]:
        """Seconds between start and stop, or None while the run goes on."""
        if self.started_at is None or self.stopped_at is None:
            return None
        return (self.stopped_at - self.started_at).total_seconds()


# A named triple of ECC config files (describe-, prepare-, configure-<name>.xcfg).
class Config(SQLModel, table=True):
    id: Optional[int] = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True, max_length=200)
    describe: str = Field(max_length=200)
    prepare: str = Field(max_length=200)
    configure: str = Field(max_length=200)
    active: bool = Field(default=False)


# A host reached over SSH where data routers (and often ECC servers) run.
class DaqNode(SQLModel, table=True):
    id: Optional[int] = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True, max_length=200)
    host: Optional[str] = Field(default=None, max_length=255)
    user: Optional[str] = Field(default=None, max_length=100)
    port: int = Field(default=22)
    key_path: Optional[str] = Field(default=None, max_length=1000)


# A getEccSoapServer: drives its sources through the ECC state machine over SOAP.
class ECCServer(SQLModel, table=True):
    id: Optional[int] = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True, max_length=200)
    url: str = Field(max_length=1000)
    node_id: Optional[int] = Field(default=None, foreign_key="daqnode.id")
    # Seconds a transition may take before its step fails.
    transition_timeout: float = Field(default=120.0)
    # Expected seconds of a transition when the server has no history yet.
    expected_seconds: float = Field(default=5.0)
    # Last state seen by a refresh (None: never seen), and when/why it failed.
    state: Optional[int] = Field(default=None)
    # The state a transition under way leads to, as GetState last said (0: settled).
    transition: Optional[int] = Field(default=None)
    online: Optional[bool] = Field(default=None)
    last_seen_at: Optional[datetime] = timestamp()
    last_error: Optional[str] = Field(default=None, max_length=2000)
    # Last time it was seen RUNNING: a run whose sources stopped without a Stop (a reboot, a
    # power cut) is recorded stopped at the last time one of them was seen running.
    running_seen_at: Optional[datetime] = timestamp()
    # Where the server reads its .xcfg files, and where a stop backs them up (on its node).
    config_dir: Optional[str] = Field(default=None, max_length=1000)
    backup_dir: Optional[str] = Field(default=None, max_length=1000)
    # Last process check on its node: getEccSoapServer running (None: unknown), and why not.
    process_running: Optional[bool] = Field(default=None)
    process_checked_at: Optional[datetime] = timestamp()
    process_error: Optional[str] = Field(default=None, max_length=2000)
    # The config chosen for this server's next transitions ({"describe", "prepare",
    # "configure"}); None: the experiment's active config.
    config: Optional[dict] = Field(default=None, sa_column=Column(JSON, nullable=True))
    # When GetConfigIDs was last answered (OfferedConfig holds the answer), or why not.
    configs_read_at: Optional[datetime] = timestamp()
    configs_error: Optional[str] = Field(default=None, max_length=2000)


# A config one ECC server offers, as its GetConfigIDs last said.
class OfferedConfig(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("server", "describe", "prepare", "configure"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    # The ECC server's name; names outlive topology reloads.
    server: str = Field(index=True, max_length=200)
    describe: str = Field(max_length=200)
    prepare: str = Field(max_length=200)
    configure: str = Field(max_length=200)
    read_at: datetime = timestamp(now=True)


# A data router: receives one source's stream and writes .graw files to staging.
class DataRouter(SQLModel, table=True):
    id: Optional[int] = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True, max_length=200)
    node_id: Optional[int] = Field(default=None, foreign_key="daqnode.id")
    ip_address: str = Field(max_length=255)
    port: int = Field(default=46005)
    type: str = Field(default="TCP", max_length=8)
    staging_dir: str = Field(max_length=1000)
    # The bytes it may fill on a shared staging disk (None: the whole filesystem).
    staging_quota_bytes: Optional[int] = Field(default=None, sa_column=Column(
        BigInteger, nullable=True))
    # Last check: router process running, .graw files left in staging (None: unknown).
    online: Optional[bool] = Field(default=None)
    graw_files: Optional[int] = Field(default=None)
    checked_at: Optional[datetime] = timestamp()
    last_error: Optional[str] = Field(default=None, max_length=2000)
    # The next run's folder, found already on the node by the last check (None: absent):
    # its files would mix with another run's.
    next_run_folder: Optional[str] = Field(default=None, max_length=2000)

    @property
    def clean(self) -> Optional[bool]:
        """A staging directory is clean when it holds no .graw file."""
        return None if self.graw_files is None else self.graw_files == 0


# A data source (a CoBo board or the MuTAnT) driven by one ECC server.
class DataSource(SQLModel, table=True):
    id: Optional[int] = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True, max_length=200)
    ecc_server_id: int = Field(foreign_key="eccserver.id", index=True)
    data_router_id: Optional[int] = Field(default=None, foreign_key="datarouter.id")

    @property
    def is_mutant(self) -> bool:
        """The MuTAnT goes last on the way up and first on the way down."""
        return names_the_mutant(self.name)


def names_the_mutant(source_name: str) -> bool:
    """Whether a data source of this name is the MuTAnT."""
    return source_name.lower().startswith("mutant")


# What a stop did with one run's files on one node: a router's data, or an ECC's configs.
class RunFiles(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("run_id", "kind", "target"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id", index=True)
    # "data" (a router's .graw files, moved) or "configs" (an ECC's .xcfg files, copied).
    kind: str = Field(max_length=16)
    target: str = Field(max_length=200)
    node: str = Field(max_length=200)
    folder: str = Field(max_length=2000)
    files: int = Field(default=0)
    # 64-bit: a run's data are gigabytes per router.
    bytes: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    recorded_at: Optional[datetime] = timestamp()
