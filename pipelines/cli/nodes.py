"""``daqflow routers check``: the nodes' data routers and ECC server processes, now."""
from __future__ import annotations

import json
import sys

import click

from pipelines.cli.common import EXIT_FAILED, database


@click.group()
def routers():
    """Data routers and ECC servers on the nodes: process and staging-directory checks."""


@routers.command("check")
@click.option("--json", "as_json", is_flag=True)
def routers_check(as_json):
    """Check every node now; exit 1 if a run could not start on its data routers."""
    from pipelines.daq.nodes import checks

    database()
    statuses, ecc_statuses = checks.check_nodes()
    if as_json:
        click.echo(json.dumps({"routers": [dict(vars(st), clean=st.clean) for st in statuses],
                               "ecc_servers": [vars(st) for st in ecc_statuses]}, indent=2))
    else:
        words = {True: "running", False: "NOT RUNNING", None: "unknown"}
        for st in statuses:
            click.echo(f"{st.name:<16} {st.node:<12} process {words[st.online]:<11} "
                       f"{st.problem() or 'staging clean'}")
        for st in ecc_statuses:
            click.echo(f"{st.name:<16} {st.node:<12} process {words[st.running]:<11} "
                       f"{st.error or ''}".rstrip())
    sys.exit(EXIT_FAILED if any(st.problem() for st in statuses) else 0)
