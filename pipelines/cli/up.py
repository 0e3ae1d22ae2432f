"""``daqflow up`` (everything one host runs) and ``daqflow web`` (the page alone)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from pipelines.cli.common import database, fail


@click.command()
@click.option("--host", default=None, help="Address to serve on  [default: DAQFLOW_HOST].")
@click.option("--port", default=None, type=int, help="Port to serve on  [default: DAQFLOW_PORT].")
def web(host, port):
    """Serve the web interface (needs DAQFLOW_SECRET_KEY) with waitress."""
    from waitress import serve

    from models import settings
    from pipelines.orchestration.app import freeze_startup_objects
    from webui import create_app
    from webui.auth import MissingSecretKey

    database()  # the app factory leaves the schema to commands
    try:
        app = create_app()
    except MissingSecretKey as exc:
        fail(str(exc))
    freeze_startup_objects()  # a full garbage collection would walk it all mid-request
    # One process, a fixed pool of threads: the live section's shared render stays shared.
    # A connection that sends nothing for 30 s is closed; past 500 open ones, new ones wait.
    serve(app, host=host or settings.WEB_HOST.get(), port=port or settings.WEB_PORT.get(),
          threads=settings.WEB_THREADS.get(), channel_timeout=30, connection_limit=500,
          ident="daqflow")


@click.command()
@click.option("--demo", is_flag=True, help="Simulated DAQ: SQLite, private Redis, ECC simulator.")
@click.option("--topology", "path", type=click.Path(dir_okay=False), default=None,
              help="Load this topology before starting  [default: DAQFLOW_TOPOLOGY].")
@click.option("--port", default=None, type=int, help="Web server port  [default: DAQFLOW_PORT].")
@click.option("--flower", is_flag=True, help="Also run Flower (pip install '.[flower]').")
# Two per core: a worker's consumer loop waits for the interpreter lock behind its busy
# step threads, and a second process per core lets 1024 steps begin sooner (bench/RECORD.md:
# one per core, 1.20 and 1.73 x the engine at N = 256 and 1024, against 1.15 and 1.51).
@click.option("--control-workers", type=int,
              default=lambda: min(2 * (os.cpu_count() or 1), 8),
              show_default="two per core, up to 8",
              help="Control worker processes (each a thread pool) on this host.")
def up(demo, path, port, flower, control_workers):
    """Start every process of this host (Ctrl-C stops them all)."""
    from models import migrate, settings
    from pipelines.cli import processes, supervisor
    from pipelines.topology import DEMO_TOPOLOGY, loading, schema

    instance = settings.instance_dir()
    port = port or settings.WEB_PORT.get()
    try:
        held = supervisor.hold_instance(instance, port)  # noqa: F841 (held while up runs)
    except supervisor.AlreadyRunning as exc:
        fail(str(exc))
    env = processes.with_allocator_settings(
        dict(os.environ, PYTHONUNBUFFERED="1", DAQFLOW_INSTANCE=str(instance)))
    path = path or (DEMO_TOPOLOGY if demo else settings.TOPOLOGY.get())
    migrate.prepare(auto_upgrade=demo)  # a real lab upgrades deliberately
    if demo:
        env["DAQFLOW_SECRET_KEY"] = _demo_secret_key(instance)
        password = _demo_operator()
        click.echo(f"demo operator: name 'operator', password '{password}' "
                   "(a new one at every start)")
    else:
        from webui.auth import MissingSecretKey, check_secret_key

        try:
            check_secret_key(settings.SECRET_KEY.get())
        except MissingSecretKey as exc:  # before any process starts, not in the web's log
            fail(str(exc))
    topology = None
    if path:
        try:
            loading.load(schema.read(path))
        except schema.TopologyError as exc:
            fail(str(exc))
        topology = Path(path).resolve()
        env["DAQFLOW_TOPOLOGY"] = str(topology)
    servers, own_threads = _ecc_servers(), settings.CONTROL_CONCURRENCY.get()
    threads = own_threads or processes.control_threads(servers, control_workers)
    commands = processes.processes(instance, topology, port, threads=threads)
    click.echo(f"{control_workers} control worker(s) of {threads} threads, for {servers} "
               "ECC servers" + (" (DAQFLOW_CONTROL_CONCURRENCY)" if own_threads else ""))
    shortfall = processes.too_few_threads(servers, [threads] * control_workers)
    if shortfall:
        click.echo(f"warning: {shortfall}", err=True)
    if not demo:
        commands.pop("simulator")
    if not flower:
        commands.pop("flower")
    commands = processes.scale(commands, "control", control_workers)
    redis_process = None
    if not (settings.REDIS_URL.get() or settings.BROKER_URL.get()):
        redis_process, url = supervisor.start_redis(instance)
        env["REDIS_URL"] = url
        settings.redis_url_file().write_text(url)
        click.echo(f"private Redis at {url} (pid {redis_process.pid})")
    click.echo(f"daqflow on http://{settings.WEB_HOST.get()}:{port}/ — Ctrl-C stops everything")
    try:
        code = supervisor.run_processes(commands, env)
    finally:
        if redis_process is not None:
            supervisor.stop_all([redis_process])
            settings.redis_url_file().unlink(missing_ok=True)
    sys.exit(code)


def _ecc_servers() -> int:
    """How many ECC servers the topology in the database has."""
    from sqlalchemy import func
    from sqlmodel import select

    from models import ECCServer, session

    with session() as s:
        return s.exec(select(func.count()).select_from(ECCServer)).one()


def _demo_secret_key(instance: Path) -> str:
    """The demo's own secret key, kept in the instance folder so logins survive a restart."""
    import secrets

    from models import settings

    if settings.SECRET_KEY.get():
        return settings.SECRET_KEY.get()
    path = instance / "secret_key"
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(32))
    return path.read_text().strip()


def _demo_operator() -> str:
    """(Re)create the demo's operator account with a fresh password; returns it."""
    import secrets

    from models.vocabulary import Role
    from pipelines.runcontrol import accounts

    password = secrets.token_urlsafe(9)
    accounts.add("operator", password, role=Role.OPERATOR, replace=True)
    return password
