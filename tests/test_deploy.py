"""The deployment material in ``deploy/``: nats-server configs, systemd units, make-certs.sh.

Every nats-server config must pass ``nats-server -t`` with real (throwaway) certificates
in place. The three-hub cluster and the four-hub leaf-node tree are then started on
127.0.0.1, with their TLS and per-hub users as shipped, to show that a hub's user can use
its network's subjects and nothing else, and that two hubnode nodes on different servers
converge through them. Ports, hostnames, certificate paths and password placeholders are
rewritten in copies; nothing else in the configs is changed.
"""

from __future__ import annotations

import asyncio
import configparser
import contextlib
import ipaddress
import json
import logging
import re
import shutil
import socket
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import nats
import nats.errors
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from nats.aio.client import Client
from nats.aio.msg import Msg

from hubnode.config import HubFolder
from hubnode.node import Node, status_path
from hubnode.protocol.natsd import nats_server_binary
from tests.conftest import registered

NET = "darlington-csn"
DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
NATS_CONFIGS = sorted((DEPLOY / "nats").rglob("*.conf"))
CLUSTER = ("a", "b", "c")
TREE = ("a", "b", "c", "d")
# Placeholder bcrypt hashes in the configs; in the copies the password is the placeholder's
# own name, which is also what the configs put in route and leaf-node URLs.
PLACEHOLDER_HASH = re.compile(r"\$2a\$11\$REPLACE-WITH-BCRYPT-OF-([A-Z_]+)")
UNIT_KEYS = {
    "hubnode.service": {
        "User": "hubnode",
        "ExecStart": "/opt/hubnode/.venv/bin/hubnode run --data /var/lib/hubnode",
        "Restart": "on-failure",
        "KillSignal": "SIGTERM",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ReadWritePaths": "/var/lib/hubnode",
        "PrivateTmp": "yes",
    },
    "hubnode-nats.service": {
        "User": "hubnode-nats",
        "ExecStart": "/opt/hubnode/.venv/bin/nats-server -c /etc/hubnode/nats-server.conf",
        "Restart": "on-failure",
        "KillSignal": "SIGTERM",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "PrivateTmp": "yes",
    },
}


# -- throwaway certificates and localised copies of the configs -------------------------


def make_tls(folder: Path, hubs: Iterable[str]) -> Path:
    """A private CA and one certificate per hub (for localhost and 127.0.0.1) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hubnode test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for hub in hubs:
        key = ec.generate_private_key(ec.SECP256R1())
        san = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        usages = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"hub-{hub}")]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(cert_sign=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        (folder / f"hub-{hub}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (folder / f"hub-{hub}-key.pem").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return folder


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


class Ports(dict[tuple[str, int], int]):
    """A free loopback port for each (hub, port in the configs), picked on first use."""

    def __missing__(self, key: tuple[str, int]) -> int:
        while True:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port: int = s.getsockname()[1]
            if port not in self.values():
                self[key] = port
                return port


def localize(text: str, hub: str, tls: Path, ports: Ports) -> str:
    """``text`` (hub ``hub``'s config) with test certificates, loopback ports and passwords."""
    text = text.replace("/etc/hubnode/tls/", f"{tls}/")
    text = re.sub(
        r"(?:0\.0\.0\.0|127\.0\.0\.1):(\d+)",
        lambda m: f"127.0.0.1:{ports[hub, int(m[1])]}",
        text,
    )
    text = re.sub(
        r"hub-([a-z])\.example\.org:(\d+)",
        lambda m: f"127.0.0.1:{ports[m[1], int(m[2])]}",
        text,
    )
    return PLACEHOLDER_HASH.sub(r"\1", text)


def hub_of(conf: Path) -> str:
    found = re.fullmatch(r"hub-([a-z])\.conf", conf.name)
    assert found, f"{conf}: configs are named hub-X.conf"
    return found[1]


def localized_copies(
    topology: str, hubs: Iterable[str], tmp: Path, ports: Ports
) -> dict[str, Path]:
    tls = make_tls(tmp / "tls", hubs)
    copies = {}
    for hub in hubs:
        source = DEPLOY / "nats" / topology / f"hub-{hub}.conf"
        copy = tmp / topology / source.name
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text(localize(source.read_text(), hub, tls, ports))
        copies[hub] = copy
    return copies


# -- running the servers ----------------------------------------------------------------


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=2) as response:
        return json.load(response)


async def until(condition: Callable[[], Any], what: str, seconds: float = 10.0) -> Any:
    """Poll ``condition`` (a sync or async callable) every 50 ms until it is truthy."""
    last: Exception | None = None
    try:
        async with asyncio.timeout(seconds):
            while True:
                try:
                    result = condition()
                    if asyncio.iscoroutine(result):
                        result = await result
                    if result:
                        return result
                except (OSError, ValueError) as e:
                    last = e
                await asyncio.sleep(0.05)  # polling interval of a bounded wait
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what}" + (f" (last error: {last})" if last else ""))


@contextlib.asynccontextmanager
async def nats_servers(copies: dict[str, Path], ports: Ports) -> AsyncIterator[None]:
    """Run one nats-server per config; print their logs if the test fails."""
    procs: list[asyncio.subprocess.Process] = []
    logs = {hub: conf.with_suffix(".log") for hub, conf in copies.items()}
    try:
        for hub, conf in copies.items():
            with open(logs[hub], "wb") as log:
                procs.append(
                    await asyncio.create_subprocess_exec(
                        str(nats_server_binary()),
                        "-c",
                        str(conf),
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
        for hub in copies:
            varz = f"http://127.0.0.1:{ports[hub, 8222]}/varz"
            await until(
                lambda url=varz: asyncio.to_thread(_get_json, url),
                f"nats-server of hub {hub} to start",
            )
        yield
    except BaseException:
        for hub, path in logs.items():
            print(f"--- nats-server of hub {hub} ---\n{path.read_text(errors='replace')}")
        raise
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()


def routes_of(hub: str, ports: Ports, expected: set[str]) -> bool:
    """Whether hub ``hub``'s server has routes to every server named in ``expected``."""
    routez = _get_json(f"http://127.0.0.1:{ports[hub, 8222]}/routez")
    return {r.get("remote_name", "") for r in routez.get("routes") or ()} >= expected


def leafnodes_of(hub: str, ports: Ports, expected: int) -> bool:
    """Whether hub ``hub``'s server has ``expected`` leaf-node connections."""
    leafz = _get_json(f"http://127.0.0.1:{ports[hub, 8222]}/leafz")
    return int(leafz.get("leafnodes", 0)) == expected


async def cluster_ready(ports: Ports) -> None:
    for hub in CLUSTER:
        others = {f"darlington-hub-{o}" for o in CLUSTER if o != hub}
        await until(
            lambda hub=hub, o=others: asyncio.to_thread(routes_of, hub, ports, o),
            f"routes of hub {hub}",
        )


async def tree_ready(ports: Ports) -> None:
    # A: B and C attached; B: attached to A, D attached; C and D: attached to their parent.
    expected = {"a": 2, "b": 2, "c": 1, "d": 1}
    for hub, count in expected.items():
        await until(
            lambda hub=hub, n=count: asyncio.to_thread(leafnodes_of, hub, ports, n),
            f"leaf nodes of hub {hub}",
        )


# -- clients ----------------------------------------------------------------------------


def client_tls(tls: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(tls / "ca.pem"))


def client_url(hub: str, ports: Ports, password: str | None = None) -> str:
    secret = password or f"HUB_{hub.upper()}_CLIENT_PASSWORD"
    return f"tls://hub-{hub}:{secret}@127.0.0.1:{ports[hub, 4222]}"


class HubClient:
    """One hub's NATS connection, with the errors the server sent it."""

    def __init__(self, nc: Client, errors: asyncio.Queue[Exception]) -> None:
        self.nc = nc
        self.errors = errors

    @classmethod
    async def connect(cls, hub: str, ports: Ports, tls: Path) -> HubClient:
        errors: asyncio.Queue[Exception] = asyncio.Queue()

        async def on_error(e: Exception) -> None:
            errors.put_nowait(e)

        nc = await nats.connect(
            servers=[client_url(hub, ports)],
            tls=client_tls(tls),
            allow_reconnect=False,
            connect_timeout=3,
            error_cb=on_error,
        )
        return cls(nc, errors)

    async def next_error(self) -> str:
        """The next error the server reported, lower-cased (nats-py's wording varies)."""
        try:
            async with asyncio.timeout(5):
                return str(await self.errors.get()).lower()
        except TimeoutError:
            return "(no error from the server within 5 s)"


async def delivered(publisher: HubClient, subscriber: HubClient, subject: str) -> bytes:
    """Publish on ``subject`` until ``subscriber`` gets a message (interest takes a moment
    to cross routes and leaf nodes); returns what arrived."""
    got: asyncio.Queue[bytes] = asyncio.Queue()

    async def on_message(msg: Msg) -> None:
        got.put_nowait(msg.data)

    sub = await subscriber.nc.subscribe(subject, cb=on_message)
    await subscriber.nc.flush()
    try:

        async def arrived() -> bytes | None:
            await publisher.nc.publish(subject, b"hello")
            await publisher.nc.flush()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.05):
                    return await got.get()
            return None

        data: bytes = await until(arrived, f"{subject} to arrive")
        return data
    finally:
        await sub.unsubscribe()


async def answers_requests(responder: HubClient, requester: HubClient) -> bytes:
    """A sync-style request from ``requester`` answered by ``responder`` on another server."""
    subject = f"hubnode.{NET}.sync.hub:test"

    async def answer(msg: Msg) -> None:
        await msg.respond(b"reply to " + msg.data)

    sub = await responder.nc.subscribe(subject, cb=answer)
    await responder.nc.flush()
    try:

        async def ask() -> bytes | None:
            with contextlib.suppress(nats.errors.TimeoutError, nats.errors.NoRespondersError):
                reply = await requester.nc.request(subject, b"records?", timeout=0.5)
                return reply.data
            return None

        data: bytes = await until(ask, f"a reply on {subject}")
        return data
    finally:
        await sub.unsubscribe()


async def assert_confined_to_network(client: HubClient, hub: str) -> None:
    """Anything outside hubnode.<net>.> (and inboxes to read replies) is refused."""
    await client.nc.publish("hubnode.another-net.ev", b"x")
    await client.nc.flush()
    assert 'permissions violation for publish to "hubnode.another-net.ev"' in (
        await client.next_error()
    ), f"hub {hub} may publish outside its network"
    await client.nc.publish("_INBOX.someone.else", b"x")
    await client.nc.flush()
    assert 'permissions violation for publish to "_inbox.someone.else"' in (
        await client.next_error()
    ), f"hub {hub} may publish to inboxes that asked it nothing"
    await client.nc.subscribe("hubnode.>")
    await client.nc.flush()
    assert 'permissions violation for subscription to "hubnode.>"' in (await client.next_error()), (
        f"hub {hub} may listen outside its network"
    )


# -- the configs pass nats-server's own check -------------------------------------------


def test_deploy_ships_both_topologies() -> None:
    names = {str(c.relative_to(DEPLOY / "nats")) for c in NATS_CONFIGS}
    assert {f"cluster/hub-{h}.conf" for h in CLUSTER} <= names
    assert {f"tree/hub-{h}.conf" for h in TREE} <= names


@pytest.mark.parametrize("conf", NATS_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_nats_config_passes_nats_server_check(conf: Path, tmp_path: Path) -> None:
    text = conf.read_text()
    hub = hub_of(conf)
    # Shipped with placeholders: nobody can log in until the operator sets passwords.
    assert "REPLACE-WITH-BCRYPT-OF-" in text
    assert "/etc/hubnode/tls/ca.pem" in text
    copy = tmp_path / conf.name
    copy.write_text(localize(text, hub, make_tls(tmp_path / "tls", [hub]), Ports()))
    result = subprocess.run(
        [str(nats_server_binary()), "-t", "-c", str(copy)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("conf", NATS_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_nats_config_check_fails_when_a_certificate_is_missing(conf: Path, tmp_path: Path) -> None:
    # The check above is worth something: nats-server -t opens every file named.
    hub = hub_of(conf)
    tls = make_tls(tmp_path / "tls", [hub])
    (tls / f"hub-{hub}-key.pem").unlink()
    copy = tmp_path / conf.name
    copy.write_text(localize(conf.read_text(), hub, tls, Ports()))
    result = subprocess.run(
        [str(nats_server_binary()), "-t", "-c", str(copy)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert f"hub-{hub}-key.pem" in result.stdout + result.stderr


@pytest.mark.parametrize("conf", NATS_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_nats_config_keeps_clients_and_monitoring_on_loopback(conf: Path) -> None:
    text = conf.read_text()
    assert re.search(r'^listen: "127\.0\.0\.1:4222"$', text, re.M)
    assert re.search(r'^http: "127\.0\.0\.1:8222"$', text, re.M)
    # One user per hub, limited to its network's subjects.
    assert f'user: "hub-{hub_of(conf)}"' in text
    assert f'publish: {{ allow: ["hubnode.{NET}.>"] }}' in text


# -- the cluster ------------------------------------------------------------------------


async def test_cluster_hub_may_use_its_network_subjects_and_nothing_else(tmp_path: Path) -> None:
    ports = Ports()
    copies = localized_copies("cluster", CLUSTER, tmp_path, ports)
    tls = tmp_path / "tls"
    async with nats_servers(copies, ports):
        await cluster_ready(ports)
        a = await HubClient.connect("a", ports, tls)
        c = await HubClient.connect("c", ports, tls)
        try:
            assert await delivered(a, c, f"hubnode.{NET}.ev") == b"hello"
            assert await delivered(c, a, f"hubnode.{NET}.heads") == b"hello"
            assert await answers_requests(a, c) == b"reply to records?"
            await assert_confined_to_network(a, "a")
            # no_advertise: a node knows only its own hub's server, never fails over to
            # another hub's (where its user does not exist).
            assert a.nc.discovered_servers == []
            assert c.nc.discovered_servers == []
        finally:
            await a.nc.close()
            await c.nc.close()


async def test_cluster_refuses_a_wrong_password_and_an_unknown_ca(tmp_path: Path) -> None:
    ports = Ports()
    copies = localized_copies("cluster", CLUSTER, tmp_path, ports)
    tls = tmp_path / "tls"
    async with nats_servers(copies, ports):
        with pytest.raises(nats.errors.Error):
            await nats.connect(
                servers=[client_url("a", ports, password="guess")],
                tls=client_tls(tls),
                allow_reconnect=False,
                connect_timeout=3,
            )
        # Another hub's user is not defined on hub A's server either.
        with pytest.raises(nats.errors.Error):
            await nats.connect(
                servers=[f"tls://hub-b:HUB_B_CLIENT_PASSWORD@127.0.0.1:{ports['a', 4222]}"],
                tls=client_tls(tls),
                allow_reconnect=False,
                connect_timeout=3,
            )
        # A client that does not trust the private CA does not get as far as a password.
        with pytest.raises((ssl.SSLError, nats.errors.Error)):
            await nats.connect(
                servers=[client_url("a", ports)],
                tls=ssl.create_default_context(
                    cafile=str(make_tls(tmp_path / "other", []) / "ca.pem")
                ),
                allow_reconnect=False,
                connect_timeout=3,
            )


# -- the leaf-node tree -----------------------------------------------------------------


async def test_tree_carries_the_network_subjects_between_leaves(tmp_path: Path) -> None:
    ports = Ports()
    copies = localized_copies("tree", TREE, tmp_path, ports)
    tls = tmp_path / "tls"
    async with nats_servers(copies, ports):
        await tree_ready(ports)
        c = await HubClient.connect("c", ports, tls)
        d = await HubClient.connect("d", ports, tls)
        try:
            # D → B → A → C and back: the longest path in the tree.
            assert await delivered(d, c, f"hubnode.{NET}.ev") == b"hello"
            assert await delivered(c, d, f"hubnode.{NET}.forks") == b"hello"
            assert await answers_requests(c, d) == b"reply to records?"
            await assert_confined_to_network(d, "d")
            # A child's leaf-node user is for its server, not for clients.
            with pytest.raises(nats.errors.Error):
                await nats.connect(
                    servers=[f"tls://hub-b-leaf:HUB_B_LEAF_PASSWORD@127.0.0.1:{ports['a', 4222]}"],
                    tls=client_tls(tls),
                    allow_reconnect=False,
                    connect_timeout=3,
                )
        finally:
            await c.nc.close()
            await d.nc.close()


# -- hubnode nodes on the shipped configs -----------------------------------------------


async def test_nodes_on_two_hubs_of_the_cluster_converge_over_tls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    ports = Ports()
    copies = localized_copies("cluster", CLUSTER, tmp_path, ports)
    # What deploy/systemd/hubnode.service sets: Python's ssl trusts the private CA.
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "tls" / "ca.pem"))
    folders = {}
    for hub in ("a", "c"):
        folder = HubFolder.init(
            tmp_path / f"node-{hub}",
            name=f"Hub {hub.upper()}",
            network=NET,
            nats_url=client_url(hub, ports),
        )
        folder.config = msgspec.structs.replace(folder.config, heads_interval=0.2)
        folders[hub] = folder
    folders["a"].add_trusted(folders["c"].hub)
    folders["c"].add_trusted(folders["a"].hub)
    # Written before any node runs, so never pushed live: C can only get them by asking
    # (sync request/reply across the routes, the reply on C's _INBOX).
    async with await folders["a"].open_log() as log:
        for i in range(3):
            await log.append("hub.registered", registered(f"Hub A {i}"))
    async with nats_servers(copies, ports):
        await cluster_ready(ports)
        nodes = [Node(folders["a"]), Node(folders["c"])]
        try:
            for node in nodes:
                await node.start()
            node_a, node_c = nodes
            assert node_a.log is not None and node_c.log is not None
            assert node_c.gossip is not None
            async with asyncio.timeout(10):
                await node_c.log.wait_for(folders["a"].hub, 3)
            # Counted once the fetch that stored them is done.
            gossip_c = node_c.gossip
            await until(lambda: gossip_c.counters.fetched >= 3, "C to count its fetched events")
            # And live: a new event is pushed on hubnode.<net>.ev.
            await node_a.log.append("hub.registered", registered("Hub A 3"))
            async with asyncio.timeout(10):
                await node_c.log.wait_for(folders["a"].hub, 4)
            assert node_c.gossip.connected
            assert node_c.gossip.counters.rejected == {}
            # The password in nats_url stays out of the status file and the log.
            node_a.write_status(running=True)
            status = status_path(folders["a"]).read_text()
            assert "tls://hub-a:***@127.0.0.1:" in status
            assert "HUB_A_CLIENT_PASSWORD" not in status
            assert "tls://hub-a:***@127.0.0.1:" in caplog.text
            assert "HUB_A_CLIENT_PASSWORD" not in caplog.text
        finally:
            for node in reversed(nodes):
                await node.stop()


# -- systemd units ----------------------------------------------------------------------


def read_unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(
        strict=False, interpolation=None, empty_lines_in_values=False
    )
    # systemd keys are case-sensitive; configparser would lower-case them.
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text(), source=str(path))
    return parser


@pytest.mark.parametrize("name", sorted(UNIT_KEYS))
def test_systemd_unit_runs_as_its_own_user_with_hardening(name: str) -> None:
    unit = read_unit(DEPLOY / "systemd" / name)
    assert set(unit.sections()) == {"Unit", "Service", "Install"}
    service = unit["Service"]
    for key, value in UNIT_KEYS[name].items():
        assert service.get(key) == value, f"{name}: {key}={service.get(key)!r}, want {value!r}"
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    assert "network-online.target" in unit["Unit"]["After"]


def test_hubnode_unit_stops_only_the_node_and_lets_it_stop_its_embedded_server() -> None:
    service = read_unit(DEPLOY / "systemd" / "hubnode.service")["Service"]
    assert service["KillMode"] == "mixed"
    assert service["StateDirectory"] == "hubnode"
    assert service["Environment"] == "SSL_CERT_FILE=/etc/hubnode/tls/ca.pem"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not here")
def test_systemd_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    bin_dir = str(Path(sys.executable).parent)
    copies = []
    for name in UNIT_KEYS:
        # verify checks that ExecStart's program exists: point it at this venv.
        text = (DEPLOY / "systemd" / name).read_text().replace("/opt/hubnode/.venv/bin", bin_dir)
        copy = tmp_path / name
        copy.write_text(text)
        copies.append(str(copy))
    result = subprocess.run(
        ["systemd-analyze", "verify", *copies], capture_output=True, text=True, timeout=60
    )
    problems = [line for line in (result.stdout + result.stderr).splitlines() if "service" in line]
    assert result.returncode == 0 and not problems, "\n".join(problems)


# -- make-certs.sh ----------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not here")
def test_make_certs_makes_a_ca_and_hub_certificates_and_reuses_the_ca(tmp_path: Path) -> None:
    script = DEPLOY / "make-certs.sh"
    out = tmp_path / "tls"

    def run(*hubs: str) -> None:
        subprocess.run(["bash", str(script), str(out), *hubs], check=True, capture_output=True)

    run("hub-a:hub-a.example.org", "hub-b")
    ca_pem = (out / "ca.pem").read_bytes()
    run("hub-c:hub-c.example.org,nats.hub-c.example.org")
    assert (out / "ca.pem").read_bytes() == ca_pem
    ca = x509.load_pem_x509_certificate(ca_pem)
    for hub, names in {
        "hub-a": {"localhost", "hub-a.example.org"},
        "hub-b": {"localhost"},
        "hub-c": {"localhost", "hub-c.example.org", "nats.hub-c.example.org"},
    }.items():
        cert = x509.load_pem_x509_certificate((out / f"{hub}.pem").read_bytes())
        cert.verify_directly_issued_by(ca)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert set(san.get_values_for_type(x509.DNSName)) == names
        assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert set(usages) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
        assert (out / f"{hub}-key.pem").stat().st_mode & 0o077 == 0
