"""``daqflow topology load`` and ``daqflow simulate``: the DAQ's description, and its simulator."""
from __future__ import annotations

import click

from pipelines.cli.common import database, fail


@click.group()
def topology():
    """The DAQ's topology (ECC servers, sources, data routers, nodes)."""


@topology.command("load")
@click.argument("path", type=click.Path(dir_okay=False))
def topology_load(path):
    """Validate a topology file and write it to the database."""
    from pipelines.topology import loading, schema

    try:
        parsed = schema.read(path)
        database()
        loading.load(parsed)
    except schema.TopologyError as exc:
        fail(str(exc))
    sources = sum(len(s.sources) for s in parsed.ecc_servers)
    click.echo(f"loaded {path}: {len(parsed.ecc_servers)} ECC servers, {sources} sources, "
               f"{len(parsed.data_routers)} data routers, experiment {parsed.experiment.name!r}")


@click.command()
@click.option("--topology", "path", envvar="DAQFLOW_TOPOLOGY", required=True,
              type=click.Path(dir_okay=False), help="Topology whose ECC servers to play.")
@click.option("--control-port", type=int, default=None, help="Extra port for /_sim/ control only.")
@click.option("--seconds-per-source", type=float, default=None,
              help="Transition time per source (default: from the topology).")
def simulate(path, control_port, seconds_per_source):
    """Serve every ECC server of a topology as a simulated SOAP server."""
    from pipelines.simulator import ecc
    from pipelines.topology import schema

    try:
        parsed = schema.read(path)
    except schema.TopologyError as exc:
        fail(str(exc))
    ecc.run(parsed, control_port=control_port, seconds_per_source=seconds_per_source)
