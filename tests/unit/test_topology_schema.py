"""Topology files as written: the demo is valid, and "this machine" means one thing everywhere."""
from __future__ import annotations

import re

import pytest

from pipelines.daq.nodes.connection import NodeAccess, is_this_machine
from pipelines.simulator.topology import SshNode, simulated_topology
from pipelines.topology import DEMO_TOPOLOGY, loading, schema

SSH = SshNode("127.0.0.1", 2222, "daq", "/keys/id_ed25519")


def test_the_demo_topology_is_valid_and_on_this_machine():
    demo = schema.read(DEMO_TOPOLOGY)
    names = [src for server in demo.ecc_servers for src in server.sources]
    assert names.count("Mutant[master]") == 1 and len(names) == 9
    assert all(is_this_machine(node.host) for node in demo.nodes)


def test_a_node_without_a_host_is_this_machine_and_any_host_is_reached_over_ssh():
    assert NodeAccess("daq0").is_local
    for host in ("127.0.0.1", "localhost", "daq1"):
        assert not NodeAccess("daq1", host, "daq", 22, "/keys/k").is_local, host
        assert not NodeAccess("daq1", host).is_local, host


def test_relative_directories_are_for_this_machine_only(tmp_path, monkeypatch):
    monkeypatch.setenv("DAQFLOW_INSTANCE", str(tmp_path))
    local = schema.parse(simulated_topology([18001, 18002]))
    assert loading.staging_dirs(local)["router-0"] == str(tmp_path / "staging" / "0")
    over_ssh = schema.parse(simulated_topology([18001, 18002], ssh=SSH))
    with pytest.raises(schema.TopologyError, match="must be an absolute path on a node reached "
                                                  "over SSH"):
        loading.staging_dirs(over_ssh)


@pytest.mark.parametrize("ssh_setting", ['user = "daq"', "port = 22", 'key = "/keys/k"'])
def test_ssh_settings_without_a_host_are_refused(ssh_setting):
    text = simulated_topology([18001]).replace('[[nodes]]\nname = "localhost"\n',
                                               f'[[nodes]]\nname = "localhost"\n{ssh_setting}\n')
    with pytest.raises(schema.TopologyError, match=r"nodes\[0\]: .* without a host: a node "
                                                   "without a host is this machine"):
        schema.parse(text)


GOOD = simulated_topology([18001, 18002])


@pytest.mark.parametrize("name", ["e20/009", ".", "..", "", "x" * 201])
def test_an_experiment_name_that_cannot_be_a_folder_name_is_refused(name):
    with pytest.raises(schema.TopologyError) as refused:
        schema.parse(GOOD.replace('name = "test"', f'name = "{name}"'))
    assert "topology: experiment.name" in str(refused.value)
    assert "without '/' or control characters, and not . or .." in str(refused.value)


@pytest.mark.parametrize("name", ["e20-009", "...", "run .1", "énergie", "x" * 200])
def test_any_other_experiment_name_is_a_folder_name(name):
    assert schema.parse(GOOD.replace('name = "test"', f'name = "{name}"')).experiment.name == name


@pytest.mark.parametrize("text, key, message", [
    (GOOD.replace("transition_timeout = 3.0", "transition_timeout = inf"),
     "defaults.transition_timeout", "finite number"),
    (GOOD.replace("transition_timeout = 3.0", "transition_timeout = nan"),
     "defaults.transition_timeout", "finite number"),
    (GOOD.replace("transition_timeout = 3.0", "transition_timeout = 1e9"),
     "defaults.transition_timeout", "less than or equal to 86400"),
    (GOOD.replace('staging_dir = "staging/0"', 'staging_dir = "staging/0\\u0000x"'),
     "data_routers[0].staging_dir", "one line of printable characters"),
    (GOOD.replace('staging_dir = "staging/0"', 'staging_dir = "staging/0\\nx"'),
     "data_routers[0].staging_dir", "one line of printable characters"),
    (GOOD.replace('staging_dir = "staging/0"', 'staging_dir = "../../etc"'),
     "data_routers[0].staging_dir", "may not leave the instance folder"),
    (GOOD.replace('staging_dir = "staging/1"', 'staging_dir = "staging/0/"'),
     "data_routers[1].staging_dir", "router-1 and router-0 share the staging directory"),
    ("a = " + "[" * 2000 + "]" * 2000, "", "nested too deeply"),
    (GOOD.replace('name = "test"', 'name = "run\\u0085log"'), "experiment.name",
     "without '/' or control characters"),
])
def test_values_that_would_break_a_start_are_refused_at_load_naming_the_key(text, key, message):
    with pytest.raises(schema.TopologyError) as refused:
        schema.parse(text)
    assert f"topology: {key}" in str(refused.value) and message in str(refused.value)


def test_a_file_that_is_not_utf8_is_refused_with_what_to_do(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(GOOD.replace('name = "test"', 'name = "d\xe9mo"').encode("latin-1"))
    with pytest.raises(schema.TopologyError, match="not UTF-8 text .*save it as UTF-8"):
        schema.read(path)


@pytest.mark.parametrize("alarms, key", [
    ('stop_run_on = ["workflow_failed"]', "alarms.stop_run_on[0]"),
    ('email = ["not an address"]', "alarms.email"),
    ('rate_delay_seconds = 0', "alarms.rate_delay_seconds"),
    ('email_per_kind = { weather = ["a@b.c"] }', "alarms.email_per_kind.weather"),
])
def test_alarm_settings_that_cannot_work_are_refused_naming_the_key(alarms, key):
    with pytest.raises(schema.TopologyError, match=re.escape(key)):
        schema.parse(GOOD + f"\n[alarms]\n{alarms}\n")


def test_alarm_settings_default_to_sensible_thresholds():
    alarms = schema.parse(GOOD).alarms
    assert (alarms.rate_min_mb_per_s, alarms.rate_delay_seconds, alarms.disk_free_min_gb,
            alarms.stop_run_on) == (0.001, 60.0, 10.0, [])
