"""The ``daqflow`` command: bring the DAQ control up, load a topology, drive runs."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import click

DEMO_TOPOLOGY = Path(__file__).parent / "demo_topology.toml"


def _fail(message: str, code: int = 2):
    click.echo(f"daqflow: {message}", err=True)
    sys.exit(code)


class _Main(click.Group):
    def invoke(self, ctx):
        from models.migrate import SchemaOutOfDate

        try:
            return super().invoke(ctx)
        except SchemaOutOfDate as exc:  # an operator's job, not a traceback
            _fail(str(exc), code=5)


@click.group(cls=_Main)
def main():
    """Run control for a GET-electronics DAQ."""


@main.group()
def db():
    """The database's schema (Alembic migrations)."""


@db.command("upgrade")
def db_upgrade():
    """Apply the migrations this daqflow brings (back the database up first)."""
    from models import migrate

    before = migrate.current()
    migrate.upgrade()
    click.echo(f"database schema: {before or 'empty'} -> {migrate.current()}")


@db.command("current")
def db_current():
    """The schema revision of the database, and the one this daqflow needs."""
    from models import migrate

    click.echo(f"database: {migrate.current() or 'empty'}; this daqflow: {migrate.head()}")


# --- topology and simulator ---------------------------------------------------------

@main.group()
def topology():
    """The DAQ's topology (ECC servers, sources, data routers, nodes)."""


@topology.command("load")
@click.argument("path", type=click.Path(dir_okay=False))
def topology_load(path):
    """Validate a topology file and write it to the database."""
    import models
    from pipelines import topology as topo

    try:
        parsed = topo.read(path)
        models.create_all()
        topo.load(parsed)
    except topo.TopologyError as exc:
        _fail(str(exc))
    sources = sum(len(s.sources) for s in parsed.ecc_servers)
    click.echo(f"loaded {path}: {len(parsed.ecc_servers)} ECC servers, {sources} sources, "
               f"{len(parsed.data_routers)} data routers, experiment {parsed.experiment.name!r}")


@main.command()
@click.option("--topology", "path", envvar="DAQFLOW_TOPOLOGY", required=True,
              type=click.Path(dir_okay=False), help="Topology whose ECC servers to play.")
@click.option("--control-port", type=int, default=None, help="Extra port for /_sim/ control only.")
@click.option("--seconds-per-source", type=float, default=None,
              help="Transition time per source (default: from the topology).")
def simulate(path, control_port, seconds_per_source):
    """Serve every ECC server of a topology as a simulated SOAP server."""
    from pipelines import ecc_simulator, topology as topo

    try:
        parsed = topo.read(path)
    except topo.TopologyError as exc:
        _fail(str(exc))
    ecc_simulator.run(parsed, control_port=control_port, seconds_per_source=seconds_per_source)


# --- processes ----------------------------------------------------------------------

@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
def web(host, port):
    """Serve the web interface (needs DAQFLOW_SECRET_KEY)."""
    from werkzeug.serving import run_simple

    from webui import MissingSecretKey, create_app

    try:
        app = create_app()
    except MissingSecretKey as exc:
        _fail(str(exc))
    run_simple(host, port, app, threaded=True, use_reloader=False)


# --- accounts -----------------------------------------------------------------------

@main.group()
def user():
    """Accounts: operators start, stop, transition and replay; viewers look."""


def _read_password(confirm: bool = True) -> str:
    if sys.stdin.isatty():
        return click.prompt("password", hide_input=True, confirmation_prompt=confirm)
    return sys.stdin.readline().rstrip("\n")  # a script pipes it in


@user.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(["operator", "viewer"]), default="viewer",
              show_default=True)
@click.option("--replace", is_flag=True, help="Set an existing account's password and role.")
def user_add(name, role, replace):
    """Create an account; the password comes from a prompt, or from stdin's first line."""
    import models
    from pipelines import accounts

    models.create_all()
    try:
        accounts.add(name, _read_password(), role=role, replace=replace)
    except accounts.AccountError as exc:
        _fail(str(exc))
    click.echo(f"account {name} ({role}) {'updated' if replace else 'created'}")


@user.command("token")
@click.argument("name")
def user_token(name):
    """Print a new API token for NAME (the previous one stops working)."""
    import models
    from pipelines import accounts

    models.create_all()
    try:
        click.echo(accounts.issue_token(name))
    except accounts.AccountError as exc:
        _fail(str(exc))
    click.echo("send it as 'Authorization: Bearer <token>'; it is not shown again", err=True)


@main.command()
@click.option("--demo", is_flag=True, help="Simulated DAQ: SQLite, private Redis, ECC simulator.")
@click.option("--topology", "path", type=click.Path(dir_okay=False), default=None,
              help="Load this topology before starting.")
@click.option("--port", default=5000, show_default=True, type=int, help="Web server port.")
@click.option("--flower", is_flag=True, help="Also run Flower (pip install '.[flower]').")
@click.option("--control-workers", type=int, default=lambda: min(os.cpu_count() or 1, 4),
              show_default="one per core, up to 4",
              help="Control worker processes (each a thread pool) on this host.")
def up(demo, path, port, flower, control_workers):
    """Start everything the Procfile lists (Ctrl-C stops it all)."""
    from models.db import instance_dir
    from pipelines import settings, supervisor, topology as topo

    env = dict(os.environ, DAQFLOW_PORT=str(port), PYTHONUNBUFFERED="1")
    instance = instance_dir()
    env["DAQFLOW_INSTANCE"] = str(instance)
    path = path or (str(DEMO_TOPOLOGY) if demo else os.environ.get("DAQFLOW_TOPOLOGY"))
    from models import migrate

    migrate.prepare(auto_upgrade=demo)  # a real lab upgrades deliberately
    if demo:
        env["DAQFLOW_SECRET_KEY"] = _demo_secret_key(instance)
        password = _demo_operator()
        click.echo(f"demo operator: name 'operator', password '{password}' "
                   "(a new one at every start)")
    else:
        from webui import MissingSecretKey, check_secret_key

        try:
            check_secret_key(os.environ.get("DAQFLOW_SECRET_KEY"))
        except MissingSecretKey as exc:  # before any process starts, not in the web's log
            _fail(str(exc))
    if path:
        try:
            topo.load(topo.read(path))
        except topo.TopologyError as exc:
            _fail(str(exc))
        env["DAQFLOW_TOPOLOGY"] = str(Path(path).resolve())
    commands = supervisor.read_procfile()
    if not demo:
        commands.pop("simulator", None)
    if not flower:
        commands.pop("flower", None)
    commands = supervisor.scale(commands, "control", control_workers)
    redis_process = None
    if not (os.environ.get("REDIS_URL") or os.environ.get("DAQFLOW_BROKER_URL")):
        redis_process, url = supervisor.start_redis(instance)
        env["REDIS_URL"] = url
        settings.redis_url_file().write_text(url)
        click.echo(f"private Redis at {url} (pid {redis_process.pid})")
    click.echo(f"daqflow on http://127.0.0.1:{port}/ — Ctrl-C stops everything")
    try:
        code = supervisor.run_processes(commands, env)
    finally:
        if redis_process is not None:
            supervisor.stop_all([redis_process])
            settings.redis_url_file().unlink(missing_ok=True)
    sys.exit(code)


def _demo_secret_key(instance: Path) -> str:
    """The demo's own secret key, kept in the instance folder so logins survive a restart."""
    import secrets

    if os.environ.get("DAQFLOW_SECRET_KEY"):
        return os.environ["DAQFLOW_SECRET_KEY"]
    path = instance / "secret_key"
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(32))
    return path.read_text().strip()


def _demo_operator() -> str:
    """(Re)create the demo's operator account with a fresh password; returns it."""
    import secrets

    from pipelines import accounts

    password = secrets.token_urlsafe(9)
    accounts.add("operator", password, role="operator", replace=True)
    return password


# --- run control --------------------------------------------------------------------

def _launch(kind: str, wait: bool, **kwargs):
    import models
    from pipelines import workflows

    models.create_all()
    try:
        workflow_id = workflows.launch(kind, **kwargs)
    except (workflows.Refused, workflows.Unavailable) as exc:
        _fail(str(exc), code=3 if isinstance(exc, workflows.Refused) else 4)
    click.echo(f"workflow {workflow_id} ({kind}) started")
    if wait:
        sys.exit(_wait(workflow_id))


def _bar(fraction: float, width: int = 30) -> str:
    filled = int(round(fraction * width))
    return "#" * filled + "." * (width - filled)


def _wait(workflow_id: int, interval: float = 0.5) -> int:
    """Show a workflow's stages until it ends; 0 if it succeeded, 1 if not."""
    from pipelines import progress

    interactive = sys.stdout.isatty()
    last = None
    while True:
        view = progress.read(workflow_id)
        lines = [f"  {st['name']:<20} [{_bar(st['done'] / st['total'] if st['total'] else 0)}] "
                 f"{st['done']}/{st['total']} {st['state']}" for st in view["stages"]]
        if interactive and last is not None:
            sys.stdout.write(f"\x1b[{len(last)}F")
        if interactive or lines != last:
            click.echo("\n".join(lines))
        last = lines
        if not view["active"]:
            break
        time.sleep(interval)
    click.echo(f"workflow {workflow_id} {view['state']}")
    if view["error"]:
        click.echo(view["error"], err=True)
    return 0 if view["state"] == "succeeded" else 1


@main.group()
def run():
    """Start and stop runs."""


@run.command("start")
@click.option("--title", default="", help="Run title.")
@click.option("--class", "run_class", default="TEST", show_default=True,
              type=click.Choice(["TEST", "PROD", "BEAM", "JUNK", "PULS"]))
@click.option("--wait", is_flag=True, help="Show progress; exit 0 only if the run started.")
def run_start(title, run_class, wait):
    """Start a run (every source must be READY)."""
    _launch("start_run", wait, title=title, run_class=run_class)


@run.command("stop")
@click.option("--wait", is_flag=True, help="Show progress; exit 0 only if the run stopped.")
def run_stop(wait):
    """Stop the run that is going."""
    _launch("stop_run", wait)


@main.command()
@click.argument("name", type=click.Choice(["describe", "prepare", "configure", "reset"]))
@click.option("--wait", is_flag=True, help="Show progress; exit 0 only on success.")
def transition(name, wait):
    """Take every source through a transition (reset: one step back)."""
    _launch(name, wait)


@main.group()
def workflow():
    """Inspect workflows."""


@workflow.command("show")
@click.argument("workflow_id", type=int)
@click.option("--json", "as_json", is_flag=True)
def workflow_show(workflow_id, as_json):
    """A workflow's stages and steps."""
    from pipelines import progress, workflows

    try:
        view = progress.read(workflow_id)
    except workflows.NotFound as exc:
        _fail(str(exc))
    if as_json:
        click.echo(json.dumps(view, indent=2))
        return
    click.echo(f"workflow {view['id']} {view['kind']}: {view['state']}")
    if view["error"]:
        click.echo(f"  error: {view['error']}")
    for stage in view["stages"]:
        click.echo(f"  {stage['name']}: {stage['state']} ({stage['done']}/{stage['total']})")
        for step in stage["steps"]:
            took = f" {step['duration']:.2f}s" if step["duration"] is not None else ""
            error = f" — {step['error']}" if step["error"] else ""
            click.echo(f"    {step['target']} {step['operation']} #{step['attempt']} "
                       f"{step['state']}{took}{error}")
    if view["files"]:
        files = view["files"]
        click.echo(f"  files of run {files['run_number']}: "
                   f"{'organized' if files['organized_at'] else 'NOT all organized'}")
        for row in files["data"] + files["configs"]:
            click.echo(f"    {row['kind']:<7} {row['target']:<16} {row['files']:>5} files "
                       f"{row['bytes']:>12} bytes  {row['node']}:{row['folder']}")


@workflow.command("replay")
@click.argument("workflow_id", type=int)
@click.option("--wait", is_flag=True, help="Show progress; exit 0 only if it then succeeds.")
def workflow_replay(workflow_id, wait):
    """Replay a failed workflow's failed (or lost) steps, then what follows them."""
    import models
    from pipelines import replay, workflows

    models.create_all()
    try:
        planned = replay.replay(workflow_id)
    except workflows.NotFound as exc:
        _fail(str(exc))
    except (workflows.Refused, workflows.Unavailable) as exc:
        _fail(str(exc), code=3 if isinstance(exc, workflows.Refused) else 4)
    redone = ", ".join(planned["replayed_steps"]) or "no step (the callback alone)"
    click.echo(f"workflow {workflow_id} replayed: {redone}")
    if wait:
        sys.exit(_wait(workflow_id))


@main.command()
@click.option("--yes", is_flag=True, help="Confirm that no workflow is running any more.")
def unlock(yes):
    """Free the run-control lock of a workflow whose process died (it also expires)."""
    from pipelines import lock

    if not yes:
        _fail("unlock frees run control for everyone; check that no workflow is running, "
              "then repeat with --yes")
    lock.clear()
    click.echo("run-control lock released")


@main.group()
def routers():
    """Data routers and ECC servers on the nodes: process and staging-directory checks."""


@routers.command("check")
@click.option("--json", "as_json", is_flag=True)
def routers_check(as_json):
    """Check every node now; exit 1 if a run could not start on its data routers."""
    import models
    from pipelines import routers as router_checks

    models.create_all()
    statuses, ecc_statuses = router_checks.check_nodes()
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
    sys.exit(1 if any(st.problem() for st in statuses) else 0)


@main.command()
@click.option("--json", "as_json", is_flag=True)
def status(as_json):
    """The DAQ's overall state, the current run and the active workflow."""
    import models
    from pipelines import progress

    models.create_all()
    view = progress.status()
    if as_json:
        click.echo(json.dumps(view, indent=2))
        return
    run_line = (f"run {view['run']['number']} '{view['run']['title']}' since "
                f"{view['run']['started_at']}" if view["run"] else "no run is going")
    click.echo(f"experiment {view['experiment']}: DAQ {view['state']}, {run_line}")
    if view["active_workflow"]:
        click.echo(f"active workflow: {view['active_workflow']}")
    for source in view["sources"]:
        click.echo(f"  {source['name']:<16} {source['ecc_server']:<16} {source['state']}")


if __name__ == "__main__":
    main()
