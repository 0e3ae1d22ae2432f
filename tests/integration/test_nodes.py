"""Node operations, for real: over the session's OpenSSH server, and on the local node."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from pipelines.cli.supervisor import free_port
from pipelines.daq.nodes import files as node_files
from pipelines.daq.nodes.connection import Node, NodeAccess, NodeError
from tests.support.daq import HOSTILE

# What it checks does not depend on the database: .ci/run's first pass only.
pytestmark = pytest.mark.database_agnostic


@pytest.fixture(params=["ssh", "local"])
def node(request, sshd):
    """A node reached over real SSH, or the local node; same interface."""
    if request.param == "ssh":
        access = NodeAccess("daq-node", sshd.host, sshd.user, sshd.port, sshd.key_path)
    else:
        access = NodeAccess("localhost")
    with Node(access) as opened:
        yield opened


def graw(directory, *names, size=1000):
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        (directory / name).write_bytes(b"x" * size)


def test_organize_moves_the_runs_files_and_counts_them(node, tmp_path):
    staging = tmp_path / "staging"
    graw(staging, "CoBo0_a.graw", "CoBo0_b.graw", size=4096)
    (staging / "notes.txt").write_text("not data")

    moved = node_files.organize(node, str(staging), "e20009", 7)

    folder = staging / "e20009" / "run_0007"
    assert moved == node_files.Moved(str(folder), 2, 8192)
    assert sorted(p.name for p in folder.iterdir()) == ["CoBo0_a.graw", "CoBo0_b.graw"]
    assert sorted(p.name for p in staging.iterdir()) == ["e20009", "notes.txt"]


def test_organize_again_moves_nothing_succeeds_and_counts_the_run_folder(node, tmp_path):
    staging = tmp_path / "staging"
    graw(staging, "a.graw")
    assert node_files.organize(node, str(staging), "exp", 1).files == 1
    again = node_files.organize(node, str(staging), "exp", 1)
    assert (again.files, again.bytes) == (1, 1000)
    assert (staging / "exp" / "run_0001" / "a.graw").exists()


def test_what_an_interrupted_organize_moved_is_counted_with_the_rest(node, tmp_path):
    staging = tmp_path / "staging"
    graw(staging / "exp" / "run_0002", "moved_before_the_kill.graw", size=3000)
    graw(staging, "left_in_staging.graw", size=500)
    moved = node_files.organize(node, str(staging), "exp", 2)
    assert (moved.files, moved.bytes) == (2, 3500)


def test_hostile_experiment_and_staging_names_run_no_command(node, tmp_path):
    staging = tmp_path / f"stag ing {HOSTILE}"
    graw(staging, "a.graw", "-rf.graw")
    cwd = os.getcwd()
    os.chdir(tmp_path)  # where a `touch PWNED` that slipped through would land locally
    try:
        moved = node_files.organize(node, str(staging), HOSTILE, 12)
    finally:
        os.chdir(cwd)
    folder = staging / HOSTILE / "run_0012"
    assert moved.files == 2
    assert sorted(p.name for p in folder.iterdir()) == ["-rf.graw", "a.graw"]
    home = os.path.expanduser("~")
    for place in (tmp_path, staging, home, "/"):
        assert not os.path.exists(os.path.join(place, "PWNED")), f"a command ran in {place}"


def test_a_name_collision_is_an_error_naming_the_file_and_overwrites_nothing(node, tmp_path):
    staging = tmp_path / "staging"
    folder = staging / "exp" / "run_0003"
    graw(folder, "a.graw", size=10)
    graw(staging, "a.graw", "b.graw", size=20)

    with pytest.raises(NodeError) as failure:
        node_files.organize(node, str(staging), "exp", 3)

    assert f"{folder}/a.graw already exists" in str(failure.value)
    assert failure.value.node == node.access.name
    assert (folder / "a.graw").read_bytes() == b"x" * 10
    assert sorted(p.name for p in staging.glob("*.graw")) == ["a.graw", "b.graw"]


def test_a_missing_staging_directory_is_a_clear_error(node, tmp_path):
    with pytest.raises(NodeError, match="staging directory .*nowhere does not exist"):
        node_files.organize(node, str(tmp_path / "nowhere"), "exp", 1)


def test_config_backup_copies_the_three_files_once(node, tmp_path):
    configs, backups = tmp_path / "configs", tmp_path / "backup root"
    configs.mkdir()
    files = node_files.config_files({"describe": "d", "prepare": "p", "configure": "c"})
    assert files == ["describe-d.xcfg", "prepare-p.xcfg", "configure-c.xcfg"]
    for name in files:
        (configs / name).write_text(name)

    copied = node_files.backup_configs(node, str(configs), str(backups), HOSTILE, 2, files)
    folder = backups / HOSTILE / "run_0002"
    assert (copied.folder, copied.files) == (str(folder), 3)
    assert sorted(p.read_text() for p in folder.iterdir()) == sorted(files)
    assert node_files.backup_configs(node, str(configs), str(backups), HOSTILE, 2, files).files == 0

    (configs / files[0]).write_text("changed since")
    with pytest.raises(NodeError, match="describe-d.xcfg already exists with other contents"):
        node_files.backup_configs(node, str(configs), str(backups), HOSTILE, 2, files)


def test_check_counts_graw_files_and_looks_for_the_process(node, tmp_path):
    clean, dirty = tmp_path / "clean", tmp_path / "dirty"
    clean.mkdir()
    graw(dirty, "a.graw", "b.graw")
    found = node_files.check(node, [str(clean), str(dirty), str(tmp_path / "gone")],
                        processes=("no-such-daqflow-process",))
    assert found.processes == {"no-such-daqflow-process": False}
    assert found.graw_files == {str(clean): 0, str(dirty): 2, str(tmp_path / "gone"): None}
    assert found.taken == set()
    # The bytes of the .graw files, and the free space of the disk under each directory.
    assert found.graw_bytes == {str(clean): 0, str(dirty): sum(
        (dirty / name).stat().st_size for name in ("a.graw", "b.graw")),
        str(tmp_path / "gone"): None}
    assert found.free_bytes[str(clean)] > 0 and found.free_bytes[str(tmp_path / "gone")] is None
    # The SSH server itself is a process every node here runs.
    assert node_files.check(node, [str(clean)], processes=("sshd",)).processes == {"sshd": True}


def test_check_finds_the_next_runs_folder_already_there(node, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    taken = first / HOSTILE / "run_0007"
    taken.mkdir(parents=True)
    second.mkdir()
    found = node_files.check(node, [str(first), str(second)], next_run=(HOSTILE, 7))
    assert found.taken == {str(taken)} and found.graw_files == {str(first): 0, str(second): 0}
    assert node_files.check(node, [str(first)], next_run=(HOSTILE, 8)).taken == set()


def test_check_finds_a_process_whose_name_is_longer_than_the_kernel_keeps(node, tmp_path):
    # Linux keeps 15 characters of a command name, so getEccSoapServer is "getEccSoapServe";
    # a name of the same kind that only this test runs.
    name = f"daqflowTest{os.getpid()}LongServer"
    link = tmp_path / "bin" / name
    link.parent.mkdir()
    link.symlink_to(shutil.which("sleep"))
    checked = (name, name[:-1])
    assert node_files.check(node, [], processes=checked).processes == dict.fromkeys(checked, False)
    process = subprocess.Popen([str(link), "60"])
    try:
        during = node_files.check(node, [], processes=checked).processes
    finally:
        process.kill()
        process.wait()
    # Only the whole name counts: a prefix of it is another program.
    assert during == {name: True, name[:-1]: False}


def test_an_unreachable_node_fails_with_a_clear_error():
    access = NodeAccess("dead-node", "127.0.0.1", "daq", free_port(), None)
    with pytest.raises(NodeError) as failure:
        Node(access)
    message = str(failure.value)
    assert message.startswith("node dead-node: connect: daq@127.0.0.1:")
    assert "refused" in message.lower()


def test_an_unknown_host_key_is_rejected_by_default(sshd, tmp_path, monkeypatch):
    monkeypatch.setenv("DAQFLOW_SSH_KNOWN_HOSTS", str(tmp_path / "empty_known_hosts"))
    access = NodeAccess("daq-node", sshd.host, sshd.user, sshd.port, sshd.key_path)
    with pytest.raises(NodeError, match="host key unknown"):
        Node(access)

    monkeypatch.setenv("DAQFLOW_SSH_HOST_KEYS", "accept-new")
    with Node(access) as node:
        assert node_files.check(node, [str(tmp_path)]).graw_files == {str(tmp_path): 0}
    assert f"[127.0.0.1]:{sshd.port}" in (tmp_path / "empty_known_hosts").read_text()


def test_a_wrong_key_is_refused(sshd, tmp_path):
    import subprocess

    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")],
                   check=True)
    access = NodeAccess("daq-node", sshd.host, sshd.user, sshd.port, str(tmp_path / "k"))
    with pytest.raises(NodeError, match="node daq-node: connect: .*[Aa]uthentication"):
        Node(access)


def test_a_host_key_that_does_not_match_the_known_hosts_file_is_refused(sshd, tmp_path,
                                                                        monkeypatch):
    import subprocess

    # Another machine answering at the node's address: its key is not the one on file.
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")],
                   check=True)
    kind, key = (tmp_path / "other.pub").read_text().split()[:2]
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{sshd.port} {kind} {key}\n")
    monkeypatch.setenv("DAQFLOW_SSH_KNOWN_HOSTS", str(known))
    access = NodeAccess("daq-node", sshd.host, sshd.user, sshd.port, sshd.key_path)
    for policy in ("reject", "accept-new"):  # accepting new keys never accepts a changed one
        monkeypatch.setenv("DAQFLOW_SSH_HOST_KEYS", policy)
        with pytest.raises(NodeError, match="host key does not match the known-hosts file"):
            Node(access)
    assert known.read_text() == f"[127.0.0.1]:{sshd.port} {kind} {key}\n"
