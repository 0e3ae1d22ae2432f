"""The zeep ECC client against the simulator, over real HTTP."""
import re
import time
import urllib.error

import pytest

from pipelines.daq.ecc.client import EccClient, EccError, client_for
from pipelines.daq.ecc.drive import drive as drive_transition
from pipelines.daq.ecc.payloads import ConfigId, DataLink
from pipelines.daq.ecc.states import EccState
from pipelines.topology import schema
from tests.support.processes import wait_for
from tests.support.wsdl import gsoap_style_wsdl

# What it checks does not depend on the database: .ci/run's first pass only.
pytestmark = pytest.mark.database_agnostic

CONFIG = ConfigId("cfg", "cfg", "cfg")


@pytest.fixture
def sim(ecc_simulator):
    ecc_simulator.reset()
    return ecc_simulator


def client(sim, index=0, **timeouts):
    return EccClient(f"ecc-cobo{index}", f"http://127.0.0.1:{sim.ports[index]}/", **timeouts)


def links(index=0):
    return [DataLink(f"CoBo[{index}]", f"router-{index}", "127.0.0.1", 46005 + index)]


def drive(c, operation, target, deadline=3.0, index=0):
    """Whether the operation was sent."""
    return drive_transition(c, operation, target, CONFIG, links(index), deadline, 0.2).sent


def test_every_transition_up_and_down_is_confirmed(sim):
    c = client(sim)
    ladder = [("Describe", EccState.DESCRIBED), ("Prepare", EccState.PREPARED),
              ("Configure", EccState.READY), ("Start", EccState.RUNNING),
              ("Stop", EccState.READY), ("Breakup", EccState.PREPARED),
              ("Undo", EccState.DESCRIBED), ("Undo", EccState.IDLE)]
    for operation, target in ladder:
        assert drive(c, operation, target) is True
        report = c.get_state()
        assert (report.state, report.transition) == (target, 0), operation
    assert [e["operation"] for e in sim.log() if e["server"] == "ecc-cobo0"] == [
        op for op, _ in ladder]


def test_transition_is_asynchronous_like_the_hardware(sim):
    c = client(sim)
    c.transition("Describe", CONFIG, links())
    # The call returned before the transition ended: no wall-clock bound needed.
    report = c.get_state()
    assert report.transition != 0 and report.state == EccState.IDLE


def test_wrong_step_is_refused_by_the_server_with_its_message(sim):
    with pytest.raises(EccError) as info:
        client(sim).transition("Start", CONFIG, links())
    assert info.value.operation == "Start" and info.value.server == "ecc-cobo0"
    assert "Start needs state READY, server is IDLE" in str(info.value)
    assert info.value.code != 0


def test_error_code_surfaces_the_ecc_message(sim):
    sim.fault("ecc-cobo1", "error", operation="Describe", code=12,
              message="CoBo[1]: AsAd 2 not responding")
    with pytest.raises(EccError) as info:
        drive(client(sim, 1), "Describe", EccState.DESCRIBED, index=1)
    assert info.value.code == 12
    assert "CoBo[1]: AsAd 2 not responding" in str(info.value)
    assert "ecc-cobo1" in str(info.value) and "Describe" in str(info.value)


def test_a_transition_that_never_ends_fails_at_its_deadline(sim):
    sim.fault("ecc-cobo0", "hang", operation="Describe")
    started = time.monotonic()
    with pytest.raises(EccError) as info:
        drive(client(sim), "Describe", EccState.DESCRIBED, deadline=1.0)
    assert 1.0 <= time.monotonic() - started < 2.0
    assert "not confirmed within its deadline of 1 s" in str(info.value)


@pytest.mark.parametrize("kind, fault, within, message", [
    # The server's port closed under it: the step fails at once, not at its deadline.
    # (Its kept-alive connection is cut: "failed"; a new one is refused: "refused".)
    ("refused", {"kind": "refuse"}, (0.0, 1.0), r"connection (failed|refused) at http://"),
    # The server takes the call and never answers: the read timeout (0.5 s here) ends it.
    ("silent", {"kind": "slow", "operation": "GetState", "seconds": 5.0}, (0.5, 1.5),
     r"no answer from http://\S+ in time"),
])
def test_a_server_that_stops_answering_mid_transition_fails_before_its_deadline(
        sim, kind, fault, within, message):
    sim.set_state("ecc-cobo1", EccState.IDLE)
    injected = []

    # Told to expect 0.05 s, the first poll finds the Describe (0.2 s here) under way.
    def stop_answering(elapsed, expected):  # called once a poll found it under way
        if not injected:
            sim.fault("ecc-cobo1", **fault)
            injected.append(time.monotonic())

    with pytest.raises(EccError) as info:
        drive_transition(client(sim, 1, read_timeout=0.5), "Describe", EccState.DESCRIBED,
                         CONFIG, links(1), 30.0, 0.05, on_progress=stop_answering)
    failed_after = time.monotonic() - injected[0]
    assert within[0] <= failed_after < within[1], f"{kind}: failed after {failed_after:.2f} s"
    assert re.search(message, str(info.value)) and "ecc-cobo1" in str(info.value)
    # The Describe was sent and taken on before the server went quiet.
    assert [(e["server"], e["operation"]) for e in sim.log()] == [("ecc-cobo1", "Describe")]


def test_refused_connection_fails_fast_and_clearly(sim):
    from pipelines.cli.supervisor import free_port

    c = EccClient("ecc-gone", f"http://127.0.0.1:{free_port()}/")
    started = time.monotonic()
    with pytest.raises(EccError) as info:
        c.get_state()
    assert time.monotonic() - started < 1.0
    assert "connection refused" in str(info.value) and "ecc-gone" in str(info.value)


def test_refuse_fault_closes_the_servers_port(sim):
    sim.fault("ecc-cobo2", "refuse")
    with pytest.raises(EccError, match="connection refused"):
        client(sim, 2).get_state()


def test_slow_answer_hits_the_read_timeout(sim):
    sim.fault("ecc-cobo3", "slow", operation="GetState", seconds=1.5)
    with pytest.raises(EccError, match="no answer .* in time"):
        client(sim, 3, read_timeout=0.5).get_state()


def test_a_slow_server_holds_up_no_other_server_of_the_simulator(sim):
    # One simulator plays every server on one event loop: a late answer must wait on its
    # own connection only, as a slow board would.
    import threading

    sim.fault("ecc-cobo3", "slow", operation="GetState", seconds=2.0)
    late = {}
    waiting = threading.Thread(target=lambda: late.update(
        report=client(sim, 3, read_timeout=5.0).get_state(), at=time.monotonic()))
    asked = time.monotonic()
    waiting.start()
    wait_for(lambda: any(e["server"] == "ecc-cobo3" for e in sim.log(transitions_only=False)),
             timeout=5, interval=0.01, message="the slow server to get its request")
    assert client(sim, 4).get_state().state == EccState.IDLE
    assert time.monotonic() - asked < 1.5, "another server's answer waited for the slow one"
    waiting.join(10)
    assert late["report"].state == EccState.IDLE and late["at"] - asked >= 2.0


def test_one_servers_transitions_are_slowed_alone(sim):
    fast, slow = client(sim, 0), client(sim, 1)
    sim.set_seconds_per_source(5.0, servers=["ecc-cobo1"])
    try:
        slow.transition("Describe", CONFIG, links(1))
        assert drive(fast, "Describe", EccState.DESCRIBED) is True  # 0.2 s, as before
        assert slow.get_state().transition == EccState.DESCRIBED  # still on its way
        with pytest.raises(urllib.error.HTTPError) as refused:
            sim.set_seconds_per_source(1.0, servers=["ecc-cobo9"])
        assert refused.value.code == 404
    finally:
        sim.set_seconds_per_source(0.2)


def test_the_polls_bound_when_a_transition_ended(sim):
    sim.set_seconds_per_source(0.6, servers=["ecc-cobo0"])
    try:  # expected in 0.2 s, it takes 0.6 s: polls from 0.2 s on, every 20 ms
        driven = drive_transition(client(sim), "Describe", EccState.DESCRIBED, CONFIG,
                                  links(0), 3.0, 0.2)
    finally:
        sim.set_seconds_per_source(0.2)
    # The simulator counts from the operation's arrival, the worker from its reply.
    assert driven.sent and 0.5 < driven.seen_moving_after < 0.6 <= driven.seen_settled_after
    assert driven.seen_settled_after - driven.seen_moving_after < 0.1
    on_time = drive_transition(client(sim, 1), "Describe", EccState.DESCRIBED, CONFIG,
                               links(1), 3.0, 0.4)  # expected 0.4 s, takes 0.2 s
    assert on_time.seen_moving_after is None and 0.4 <= on_time.seen_settled_after < 0.6


def test_already_in_target_state_sends_nothing(sim):
    sim.set_state("ecc-cobo0", EccState.READY)
    assert drive(client(sim), "Configure", EccState.READY) is False
    assert sim.log() == []


def test_config_ids_are_listed(sim):
    assert client(sim).get_config_ids() == [CONFIG]


def test_clients_are_reused_per_server_and_built_lazily(sim):
    url = f"http://127.0.0.1:{sim.ports[0]}/"
    assert client_for("ecc-cobo0", url) is client_for("ecc-cobo0", url)
    assert client_for("ecc-cobo0", url) is not client_for("ecc-cobo1", url)


def one_server_topology(port: int, name: str, sources: list[str], extra: str = ""):
    """A topology of one ECC server on ``port`` serving ``sources``, for a simulator of
    the test's own."""
    listed = ", ".join(f'"{source}"' for source in sources)
    return schema.parse(
        f'[experiment]\nname = "t"\n[[configs]]\nname = "cfg"\ndescribe = "cfg"\n'
        f'prepare = "cfg"\nconfigure = "cfg"\n{extra}'
        f'[[ecc_servers]]\nname = "{name}"\nurl = "http://127.0.0.1:{port}/"\n'
        f'sources = [{listed}]\n')


def test_a_shared_server_works_through_its_sources_in_series(tmp_path):
    from pipelines.cli.supervisor import free_port
    from pipelines.simulator.ecc import Simulator

    port = free_port()
    sources = ["CoBo[0]", "CoBo[1]", "Mutant[master]"]
    sim = Simulator(one_server_topology(port, "ecc-mutant", sources,
                                        "[simulator]\nseconds_per_source = 0.15\n"))
    sim.serve()
    try:
        c = EccClient("ecc-mutant", f"http://127.0.0.1:{port}/")
        shared_links = [DataLink(name, "r", "127.0.0.1", 46005) for name in sources]
        started = time.monotonic()
        assert drive_transition(c, "Describe", EccState.DESCRIBED, CONFIG, shared_links, 5.0, 0.45)
        assert time.monotonic() - started >= 0.45  # 3 sources x 0.15 s, one after another
    finally:
        sim.shutdown()


def test_client_talks_to_the_simulator_through_a_deployment_wsdl(tmp_path, sim, monkeypatch,
                                                                 no_network):
    monkeypatch.setenv("DAQFLOW_ECC_WSDL",
                       gsoap_style_wsdl(tmp_path, "http://schemas.xmlsoap.org/soap/encoding/"))
    client = EccClient("ecc-cobo0", f"http://127.0.0.1:{sim.ports[0]}/")
    assert client.get_state().state == EccState.IDLE
    client.transition("Describe", ConfigId("cfg", "cfg", "cfg"),
                      [DataLink("CoBo[0]", "router-0", "127.0.0.1", 46005)])
    assert [e["operation"] for e in sim.log()] == ["Describe"]


@pytest.fixture
def one_server(tmp_path):
    """One simulated ECC server on its own listener, whose connections are counted and can
    be closed after their answer without saying so (as a server restarted between two
    polls, or one with a short keep-alive, does)."""
    import socket
    import threading

    from pipelines.cli.supervisor import free_port
    from pipelines.simulator.ecc import Simulator
    from pipelines.simulator.http import Connection, Wire

    port = free_port()
    sim = Simulator(one_server_topology(port, "ecc-cobo0", ["CoBo[0]"]))
    seen = {"connections": 0, "closed": threading.Semaphore(0), "close_after_answer": False}

    class Counting(Connection):
        def connection_made(self, transport):
            seen["connections"] += 1
            super().connection_made(transport)

        def keep_open(self, request):
            return super().keep_open(request) and not seen["close_after_answer"]

        def connection_lost(self, exc):
            # The FIN goes now, not when the loop gets to close the socket: the test reads
            # "closed" as "the client's socket can tell".
            try:
                self.transport.get_extra_info("socket").shutdown(socket.SHUT_WR)
            except (AttributeError, OSError):
                pass
            super().connection_lost(exc)
            seen["closed"].release()

    wire = Wire(sim, Counting)
    wire.open(("127.0.0.1", port))
    yield f"http://127.0.0.1:{port}/", seen
    wire.shutdown()


def test_polls_reuse_one_kept_alive_connection(one_server):
    url, seen = one_server
    c = EccClient("ecc-cobo0", url)
    for _ in range(5):
        assert c.get_state().state == EccState.IDLE
    assert seen["connections"] == 1


def test_a_connection_the_server_closed_while_idle_is_not_used_again(one_server):
    url, seen = one_server
    seen["close_after_answer"] = True
    c = EccClient("ecc-cobo0", url)
    for _ in range(3):
        assert c.get_state().state == EccState.IDLE
        # The server has closed the connection it answered on, the client was not told.
        assert seen["closed"].acquire(timeout=5)
    assert c.get_state().state == EccState.IDLE and seen["connections"] == 4


def self_signed_certificate(folder):
    """A certificate for 127.0.0.1 that signs itself, and its key, as PEM files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ecc-cobo0")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=1))
                   .not_valid_after(now + datetime.timedelta(hours=1))
                   .add_extension(x509.SubjectAlternativeName(
                       [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None),
                                  critical=True)
                   .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "ecc.pem", folder / "ecc.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_an_ecc_server_on_https_is_reached_only_with_a_certificate_the_host_trusts(
        tmp_path, monkeypatch):
    import ssl

    from pipelines.cli.supervisor import free_port
    from pipelines.simulator.ecc import Simulator
    from pipelines.simulator.http import Wire

    cert, key = self_signed_certificate(tmp_path)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    port = free_port()
    sim = Simulator(one_server_topology(port, "ecc-cobo0", ["CoBo[0]"]))
    wire = Wire(sim, ssl=tls)
    wire.open(("127.0.0.1", port))
    url = f"https://127.0.0.1:{port}/"
    try:
        with pytest.raises(EccError, match="CERTIFICATE_VERIFY_FAILED"):
            EccClient("ecc-cobo0", url).get_state()
        # The host's trusted certificates (OpenSSL reads SSL_CERT_FILE) now include it.
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        assert EccClient("ecc-cobo0", url).get_state().state == EccState.IDLE
    finally:
        wire.shutdown()


def _exchange(port: int, request: bytes) -> bytes:
    """Send raw bytes to the simulator and read until it closes or a whole answer came."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(request)
        answer = b""
        while b"</SOAP-ENV:Envelope>" not in answer and not answer.endswith(b"\r\n\r\n"):
            chunk = conn.recv(65536)
            if not chunk:
                break
            answer += chunk
    return answer


def test_the_simulator_reads_headers_in_any_case_and_answers_http_1_0_too(sim):
    envelope = (b'<soap-env:Envelope xmlns:soap-env="http://schemas.xmlsoap.org/soap/envelope/">'
                b'<soap-env:Body><ns0:GetState xmlns:ns0="urn:ecc"/></soap-env:Body>'
                b'</soap-env:Envelope>')
    for version, length in (("HTTP/1.1", "content-LENGTH"), ("HTTP/1.0", "Content-Length")):
        answer = _exchange(sim.ports[0], (
            f"POST / {version}\r\nHost: x\r\n{length}: {len(envelope)}\r\n"
            f"Content-Type: text/xml\r\n\r\n").encode() + envelope)
        assert answer.startswith(b"HTTP/1.") and b" 200 OK\r\n" in answer, answer
        assert b"<ecc:State>1</ecc:State>" in answer
        assert b"<ecc:Transition>0</ecc:Transition>" in answer


def test_the_simulator_refuses_a_request_of_too_many_headers(sim):
    headers = "".join(f"X-Filler-{i}: {i}\r\n" for i in range(150))
    answer = _exchange(sim.ports[0], f"POST / HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:80]


def test_a_transition_sends_the_config_it_is_given_each_time(sim):
    # Requests are kept by their arguments: a server's next Describe with another config
    # must carry that config, not the one before.
    c = client(sim)
    c.transition("Describe", CONFIG, links())
    sim.set_state("ecc-cobo0", EccState.IDLE)
    with pytest.raises(EccError, match="unknown config 'other'"):
        c.transition("Describe", ConfigId("other", "other", "other"), links())
    sim.set_state("ecc-cobo0", EccState.IDLE)
    c.transition("Describe", CONFIG, links())
    assert [e["config"] for e in sim.log() if e["server"] == "ecc-cobo0"] == ["cfg", "other", "cfg"]
