"""Integration tests: one real part each (the simulator over HTTP, sshd, a database)."""
from __future__ import annotations

import pytest

from pipelines.simulator.topology import simulated_topology
from tests.support.services import start_simulator


@pytest.fixture(autouse=True, scope="session")
def _database(database):
    """Every integration test may use the session's database; it is made once."""
    return database


@pytest.fixture(scope="module")
def ecc_simulator(tmp_path_factory):
    """The ECC simulator alone (no routers, no Redis, no sshd): 8 CoBos and a MuTAnT.

    Per module: its placeholder getEccSoapServer process must be gone before the system
    tests check that program's process on this machine.
    """
    from pipelines.cli.supervisor import free_ports

    ports = free_ports(9)
    directory = tmp_path_factory.mktemp("ecc-sim")
    handle = start_simulator(directory, ports, simulated_topology(ports, routers=False))
    yield handle
    handle.stop()
