"""daqflow's foundation: settings, vocabulary, SQLModel tables, sessions and migrations.

It imports nothing from ``pipelines`` or ``webui``, so that every layer can use it.
"""
from models.access import Account, AuditEntry, LoginSession  # noqa: F401
from models.daq import (  # noqa: F401
    Config,
    DaqNode,
    DataRouter,
    DataSource,
    ECCServer,
    Experiment,
    OfferedConfig,
    Run,
    RunFiles,
)
from models.db import get_engine, reset_engine, session  # noqa: F401
from models.health import Alarm, EccSample, RouterSample  # noqa: F401
from models.plans import PlanEntry, RunPlan  # noqa: F401
from models.runlog import RunField, RunNote  # noqa: F401
from models.vocabulary import StepState, WorkflowState  # noqa: F401
from models.workflow import Stage, Step, Workflow  # noqa: F401
