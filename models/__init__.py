"""daqflow's database: SQLModel tables and the session that reaches them."""
from models.access import ROLES, Account, AuditEntry  # noqa: F401
from models.daq import (  # noqa: F401
    Config,
    DaqNode,
    DataRouter,
    DataSource,
    ECCServer,
    Experiment,
    Run,
    RunFiles,
)
from models.db import create_all, get_engine, reset_engine, session  # noqa: F401
from models.workflow import Stage, Step, StepState, Workflow, WorkflowState  # noqa: F401
