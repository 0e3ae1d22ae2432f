"""The ``daqflow`` command, one module per group of commands.

``database`` (db), ``topology`` (topology, simulate), ``users`` (user), ``runs`` (run,
transition, status, unlock), ``runlog`` (runs), ``configs`` (configs), ``alarms``
(alarms), ``workflows`` (workflow), ``nodes`` (routers), ``up`` (up, web), with the host's
process list (``processes``) and their supervisor (``supervisor``). Heavy imports happen
inside the commands, so ``--help`` is quick.
"""
from __future__ import annotations

import click

from pipelines.cli import (
    alarms,
    configs,
    database,
    nodes,
    plans,
    runlog,
    runs,
    topology,
    up,
    users,
    workflows,
)
from pipelines.cli.common import EXIT_SCHEMA, fail


class _Main(click.Group):
    def invoke(self, ctx):
        from models.migrate import SchemaOutOfDate
        from models.settings import NotConfigured

        try:
            return super().invoke(ctx)
        except SchemaOutOfDate as exc:  # an operator's job, not a traceback
            fail(str(exc), code=EXIT_SCHEMA)
        except NotConfigured as exc:
            fail(str(exc))


@click.group(cls=_Main)
def main():
    """Run control for a GET-electronics DAQ."""


for command in (database.db, topology.topology, topology.simulate, users.user, up.up, up.web,
                runs.run, runlog.runs, runs.transition, runs.status, runs.unlock,
                workflows.workflow, nodes.routers, configs.configs, alarms.alarms,
                plans.plan):
    main.add_command(command)
