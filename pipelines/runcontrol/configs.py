"""Configs from the servers: what each ECC server offers (GetConfigIDs), the config chosen
for the next Describe (one for all, or one per server), audited, and checked before a
Describe is sent.

A config is its three sub-config names (describe, prepare, configure); its name is
the common one when the three agree (``describe-beam.xcfg`` ... ``configure-beam.xcfg``:
"beam"), else the three joined by "/".
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from sqlmodel import delete, select

from models import Config, ECCServer, OfferedConfig, session
from models.columns import utcnow
from pipelines.daq.ecc.client import EccError, client_for
from pipelines.runcontrol import accounts
from pipelines.runcontrol.errors import Invalid, NotFound, Refused

PARTS = ("describe", "prepare", "configure")


def name_of(config: dict | None) -> str:
    """A config's name: the common sub-config name, or the three joined by "/"."""
    if not config:
        return ""
    parts = [config.get(part, "") for part in PARTS]
    return parts[0] if len(set(parts)) == 1 else "/".join(parts)


def _triple(row) -> dict:
    return {part: getattr(row, part) for part in PARTS}


def active_config(s) -> dict | None:
    """The experiment's config from the topology: every server's unless one was chosen."""
    config = s.exec(select(Config).where(Config.active == True)).first()  # noqa: E712
    return None if config is None else {"name": config.name, **_triple(config)}


def config_for(server: ECCServer, active: dict | None) -> dict | None:
    """The config a server's next transitions send: its chosen one, or the active one."""
    if server.config:
        return {"name": name_of(server.config), **{p: server.config[p] for p in PARTS}}
    return active


def _ask(server: ECCServer) -> tuple[str, list[dict] | None, str | None]:
    try:
        offered = client_for(server.name, server.url).get_config_ids()
    except EccError as exc:
        return server.name, None, str(exc)
    return server.name, [vars(config) for config in offered], None


def read_offered() -> dict[str, list[str] | str]:
    """Ask every ECC server GetConfigIDs and keep the answers; {server: names, or why not}."""
    with session() as s:
        servers = s.exec(select(ECCServer)).all()
    if not servers:
        return {}
    with ThreadPoolExecutor(max_workers=min(32, len(servers))) as pool:
        answers = list(pool.map(_ask, servers))
    now, outcome = utcnow(), {}
    with session() as s:
        rows = {srv.name: srv for srv in s.exec(select(ECCServer)).all()}
        for name, offered, error in answers:
            server = rows.get(name)
            if server is None:
                continue  # removed from the topology meanwhile
            if error is not None:
                server.configs_error = error[:2000]
                outcome[name] = error
                continue
            s.exec(delete(OfferedConfig).where(OfferedConfig.server == name))
            unique = {tuple(c[p] for p in PARTS) for c in offered}
            for triple in sorted(unique):
                s.add(OfferedConfig(server=name, read_at=now, **dict(zip(PARTS, triple))))
            server.configs_read_at, server.configs_error = now, None
            outcome[name] = sorted(name_of(dict(zip(PARTS, t))) for t in unique)
    return outcome


def offered_by(s) -> dict[str, list[dict]]:
    """What each server offers, as last read ({} for a server never read)."""
    out: dict[str, list[dict]] = {}
    for row in s.exec(select(OfferedConfig).order_by(OfferedConfig.id)).all():
        out.setdefault(row.server, []).append(_triple(row))
    return out


def listing() -> dict:
    """Every server's chosen config, what it offers and when that was read; the configs
    every server offers; the topology's active config."""
    with session() as s:
        servers = s.exec(select(ECCServer).order_by(ECCServer.name)).all()
        offered = offered_by(s)
        active = active_config(s)
    names = {srv.name: sorted({name_of(c) for c in offered.get(srv.name, [])}) for srv in servers}
    read = [set(names[srv.name]) for srv in servers if srv.configs_read_at]
    common = sorted(set.intersection(*read)) if read and len(read) == len(servers) else []
    return {"active": name_of(active), "common": common, "servers": [{
        "name": srv.name, "chosen": name_of(config_for(srv, active)),
        "chosen_here": srv.config is not None, "offered": names[srv.name],
        "read_at": srv.configs_read_at.isoformat() if srv.configs_read_at else None,
        "error": srv.configs_error} for srv in servers]}


def choose(name: object, server: object = None, actor: str | None = None) -> dict:
    """Choose the config ``name`` for the next Describe of every server, or of ``server``.

    Only a config every chosen server offers: otherwise Refused, naming the servers
    that lack it. Audited. Returns the listing as it is now.
    """
    if not isinstance(name, str) or not name.strip():
        raise Invalid("name the config to choose")
    if server is not None and not isinstance(server, str):
        raise Invalid("server must be an ECC server's name")
    with session() as s:
        servers = s.exec(select(ECCServer).order_by(ECCServer.name)).all()
        if server is not None:
            servers = [srv for srv in servers if srv.name == server]
            if not servers:
                raise NotFound(f"no ECC server named {server!r}")
        offered = offered_by(s)
        lacking, chosen = [], None
        for srv in servers:
            match = next((c for c in offered.get(srv.name, []) if name_of(c) == name), None)
            if match is None:
                lacking.append(srv.name if srv.configs_read_at else
                               f"{srv.name} (its configs were never read)")
            chosen = chosen or match
        if lacking:
            raise Refused(f"config {name!r} is not offered by {', '.join(lacking)}")
        for srv in servers:
            srv.config = dict(chosen)
        accounts.record(s, actor, "choose_config", config=name,
                        servers="all" if server is None else server)
    return listing()


def not_offered(s, servers: list[ECCServer], active: dict | None) -> list[str]:
    """The servers whose config (chosen or active) they do not offer, as last read;
    servers never read are not judged."""
    offered = offered_by(s)
    problems = []
    for srv in servers:
        config = config_for(srv, active)
        if srv.configs_read_at is None or config is None:
            continue
        if {p: config[p] for p in PARTS} not in offered.get(srv.name, []):
            problems.append(f"{srv.name} does not offer config {name_of(config)!r}")
    return problems
