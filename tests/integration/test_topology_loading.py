"""Loading topology files into the database: bad files change nothing."""
import subprocess
import sys

import pytest
from sqlmodel import func, select

import models
from models import DataRouter, DataSource, ECCServer
from pipelines.simulator.topology import simulated_topology
from pipelines.topology import loading, schema
from tests.support import ROOT

GOOD = simulated_topology([18001, 18002, 18003])


def _counts():
    with models.session() as s:
        return (s.exec(select(func.count()).select_from(ECCServer)).one(),
                s.exec(select(func.count()).select_from(DataSource)).one())


@pytest.fixture
def loaded():
    loading.load(schema.parse(GOOD))
    return _counts()


def test_good_topology_is_written(loaded):
    assert loaded == (3, 3)
    with models.session() as s:
        mutant = s.exec(select(DataSource).where(DataSource.name == "Mutant[master]")).one()
        assert mutant.is_mutant and mutant.data_router_id is not None


def test_a_routers_staging_quota_is_loaded_in_bytes():
    quota = GOOD.replace('type = "TCP"', 'type = "TCP"\nstaging_quota_gb = 2.5', 1)
    loading.load(schema.parse(quota))
    with models.session() as s:
        quotas = sorted(s.exec(select(DataRouter.staging_quota_bytes)).all(),
                        key=lambda q: q or 0)
    assert quotas == [None, None, 2_500_000_000]


@pytest.mark.parametrize("text, expected", [
    (GOOD.replace('name = "cfg"\n', 'name = "cfg\n', 1), "not valid TOML: Illegal character '\\n' (at line 5"),
    (GOOD.replace("transition_timeout = 3.0", "transition_timeout = -1"),
     "defaults.transition_timeout"),
    (GOOD.replace('url = "http://127.0.0.1:18002/"', 'url = "ftp://x"'), "ecc_servers[1].url"),
    (GOOD.replace('type = "TCP"', 'type = "UDP"', 1), "data_routers[0].type"),
    (GOOD.replace('node = "localhost"\nsources', 'node = "daq9"\nsources', 1),
     "ecc_servers[0].node: no node named 'daq9'"),
    (GOOD.replace('source = "CoBo[1]"', 'source = "CoBo[7]"'), "data_routers[1].source"),
    (GOOD + '\n[bogus]\nx = 1\n', "bogus: Extra inputs are not permitted"),
    (GOOD.replace('type = "TCP"', 'type = "TCP"\nstaging_quota_gb = 0', 1),
     "data_routers[0].staging_quota_gb"),
    (GOOD.replace('sources = ["CoBo[1]"]', 'sources = ["CoBo[0]"]'), "driven by two ECC servers"),
])
def test_bad_topology_names_the_line_or_key_and_changes_nothing(loaded, text, expected):
    with pytest.raises(schema.TopologyError) as info:
        loading.load(schema.parse(text))
    assert expected in str(info.value)
    assert _counts() == loaded


def test_cli_refuses_a_bad_file_with_the_key_and_exit_code(loaded, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(GOOD.replace('ip_address = "127.0.0.1"', 'ip_address = ""', 1))
    result = subprocess.run([sys.executable, "-m", "pipelines.cli", "topology", "load", str(bad)],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2
    assert "data_routers[0].ip_address" in result.stderr
    assert _counts() == loaded


def test_the_run_counter_never_goes_back(loaded):
    from models import Experiment, Run
    from tests.support.daq import clear_workflow_records

    clear_workflow_records()
    with models.session() as s:
        experiment = s.exec(select(Experiment).where(Experiment.name == "test")).one()
        s.add(Run(experiment_id=experiment.id, number=41, title="recorded"))
        experiment.last_run_number = 41
    with_next = GOOD.replace('[experiment]\nname = "test"\n',
                             '[experiment]\nname = "test"\nnext_run = {}\n', 1)
    for number in (0, 41):
        with pytest.raises(schema.TopologyError, match="experiment.next_run: run 41 of 'test' "
                                                       "is recorded already; the next run is 42"):
            loading.load(schema.parse(with_next.format(number)))
    loading.load(schema.parse(with_next.format(100)))  # continuing another DAQ's numbering
    loading.load(schema.parse(GOOD.replace('name = "test"\n',
                                           'name = "test"\nrearm_mutant_on_start = false\n', 1)))
    with models.session() as s:
        experiment = s.exec(select(Experiment).where(Experiment.name == "test")).one()
        assert (experiment.last_run_number, experiment.rearm_mutant_on_start) == (99, False)
    clear_workflow_records()
