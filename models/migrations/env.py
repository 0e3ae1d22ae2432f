"""Alembic's environment: daqflow's tables, on the connection `models.migrate` hands over."""
from alembic import context
from sqlmodel import SQLModel

import models.access  # noqa: F401  (register the tables)
import models.daq  # noqa: F401
import models.health  # noqa: F401
import models.runlog  # noqa: F401
import models.workflow  # noqa: F401

connection = context.config.attributes["connection"]
# SQLite alters a table by copying it; batch mode does that for every migration.
context.configure(connection=connection, target_metadata=SQLModel.metadata,
                  render_as_batch=connection.dialect.name == "sqlite", compare_type=True)
with context.begin_transaction():
    context.run_migrations()
