"""``daqflow topology load`` and ``daqflow simulate``: the DAQ's description, and its simulator."""
from __future__ import annotations

import click

from pipelines.cli import processes
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
    shortfall = processes.too_few_threads(len(parsed.ecc_servers), control_pools())
    if shortfall:
        click.echo(f"warning: {shortfall}", err=True)


def control_pools(timeout: float = 1.0) -> list[int]:
    """The thread pool size of each worker serving the control queue that answers within
    ``timeout`` (on any host); none when no worker, or no broker, answers."""
    from pipelines.orchestration.app import app

    try:
        with app.connection_for_write() as connection:
            # Once, not Celery's retries: a load does not wait on a broker that is down.
            connection.ensure_connection(max_retries=1, interval_start=0, timeout=timeout)
            inspect = app.control.inspect(timeout=timeout, connection=connection)
            queues = inspect.active_queues() or {}
            stats = inspect.stats() or {}
    except Exception:  # noqa: BLE001 (no broker: nothing to compare with, not a failure)
        return []
    return [stats[name].get("pool", {}).get("max-concurrency", 0)
            for name, served in sorted(queues.items()) if name in stats
            and any(queue.get("name") == "control" for queue in served)]


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
