"""A hub's data folder: signing key, readable TOML config and the event log.

Layout of ``DIR``::

    hubnode.toml      name, network, NATS URL, trust list (readable, editable)
    keys/hub.pem      Ed25519 private key, PKCS#8 PEM, mode 0600 (never printed)
    log.sqlite3       the event log (plus SQLite's -wal and -shm files)
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated, Any, Final
from urllib.parse import urlsplit

import msgspec

from hubnode.crypto import SigningKey
from hubnode.errors import ConfigError
from hubnode.events.envelope import Net
from hubnode.events.fields import HubId
from hubnode.events.ids import hub_display, parse_hub
from hubnode.store.log import EventLog

CONFIG_FILE: Final = "hubnode.toml"
KEY_FILE: Final = "keys/hub.pem"
LOG_FILE: Final = "log.sqlite3"
EMBEDDED: Final = "embedded"
UTF8_BOM: Final = b"\xef\xbb\xbf"
STRICT_ENV: Final = "HUBNODE_STRICT"
"""Set to 1: every command refuses a key file other users may read (docs/operating.md)."""
NATS_SCHEMES: Final = ("nats", "tls", "ws", "wss")
_NATS_FORMS: Final = (
    'write nats://HOST:PORT (or tls://, ws://, wss://; several separated by commas), or "embedded"'
)

_HEADER: Final = """\
# hubnode configuration for one hub. Plain TOML: safe to read and edit.
# nats_url: "embedded" runs a local nats-server; or nats://host:port of an existing one
# (tls://, ws://, wss:// too; several servers separated by commas).
# trust: hubs this node accepts events from (`hubnode peers add` maintains it).
# time_overdraft_seconds: how far below zero `hubnode time` may take this hub's balance.
# followup_days, answer_days: when `hubnode followup due` lists a referral (docs/pathway.md).
# [embedded]: the local nats-server's ports, cluster routes and leafnode remotes.
# console = true: `hubnode run` also serves the staff console on console_host:console_port
# (docs/console.md); console_insecure_http allows plain http, on a loopback address only.
# trusted_proxies: addresses or networks ("127.0.0.1", "10.0.0.0/24") of reverse proxies
# whose X-Forwarded-For the console believes; none by default (docs/console.md).
# storage_budget_mb_per_day: MB of records one other hub may send in a UTC day before
# `hubnode status` and the console warn; nothing is ever dropped for it (docs/operating.md).

"""


def nats_servers(url: str) -> list[str]:
    """The server URLs in a ``nats_url``: one, or several separated by commas."""
    return [server.strip() for server in url.split(",")]


def shown_url(url: str) -> str:
    """``url`` fit for logs and status files: each password (or token) becomes ``***``."""
    return ",".join(_shown_server(server) for server in url.split(","))


def _shown_server(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    userinfo, at, hostport = rest.rpartition("@")
    if not sep or not at:
        return url
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}://{user + ':***' if colon else '***'}@{hostport}"


def check_nats_url(url: str, what: str = "nats_url") -> str:
    """``url`` if it is ``"embedded"`` or NATS servers nats-py can connect to, else a
    ValueError naming the value (without its password) and what to write."""
    if url == EMBEDDED:
        return url

    def invalid(why: str) -> ValueError:
        return ValueError(f"{what} {shown_url(url)!r} is invalid ({why}): {_NATS_FORMS}")

    if not url.strip():
        raise invalid("empty")
    websocket: set[bool] = set()
    for server in nats_servers(url):
        if not server:
            raise invalid("an empty server between commas")
        scheme, sep, _ = server.partition("://")
        if not sep:
            raise invalid(f"no scheme in {_shown_server(server)!r}")
        if scheme not in NATS_SCHEMES:
            raise invalid(f"scheme {scheme!r}: use nats, tls, ws or wss")
        try:
            parts = urlsplit(server)
            host, _port = parts.hostname, parts.port
        except ValueError as e:  # "Invalid IPv6 URL", "Port out of range 0-65535", …
            raise invalid(str(e)[:1].lower() + str(e)[1:]) from None
        if not host:
            raise invalid(f"no host in {_shown_server(server)!r}")
        websocket.add(scheme in ("ws", "wss"))
    if len(websocket) > 1:
        raise invalid("it mixes websocket servers (ws, wss) with others; nats-py cannot")
    return url


class TrustedHub(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One ``[[trust]]`` entry: a hub this node accepts events (and admissions) from."""

    id: str
    """A hub id in its display form; a key no hub can have is refused (:func:`parse_hub`)."""
    name: str = ""

    def __post_init__(self) -> None:
        # Checked here, not by the HubId pattern, so that the error says why an id is
        # refused (e.g. "the identity point, for which anyone can forge signatures") rather
        # than which regex it failed.
        shown = hub_display(parse_hub(self.id))
        if shown != self.id:
            raise ValueError(f"trust id {self.id!r} must be written {shown!r}")


Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]


class EmbeddedNats(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The nats-server ``hubnode run`` starts when ``nats_url = "embedded"``."""

    host: str = "127.0.0.1"
    port: Port = 0
    """Client port; 0 picks a free one."""
    cluster_port: Port = 0
    """Port for cluster routes from other hubs' servers; 0 with no routes: no cluster."""
    routes: tuple[str, ...] = ()
    """Other hubs' servers, e.g. ``nats-route://10.0.0.2:6222``."""
    leafnode_port: Port = 0
    """Port on which other hubs' servers may attach as leaf nodes; 0: none."""
    leafnode_remotes: tuple[str, ...] = ()
    """Servers this one attaches to as a leaf node, e.g. ``nats-leaf://hub-a:7422``."""
    max_payload: Annotated[int, msgspec.Meta(ge=65536, le=8 * 1024 * 1024)] = 1024 * 1024


class Config(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=120)]
    network: Net
    hub_id: HubId
    nats_url: str = EMBEDDED
    admit_threshold: Annotated[int, msgspec.Meta(ge=1)] = 1
    heads_interval: Annotated[float, msgspec.Meta(ge=0.1, le=300)] = 2.0
    """Seconds between two announcements of this node's heads."""
    trust: tuple[TrustedHub, ...] = ()
    embedded: EmbeddedNats = EmbeddedNats()
    time_overdraft_seconds: Annotated[int, msgspec.Meta(ge=0)] = 0
    """How far below zero this hub may take its own time-credit balance (`hubnode time`)."""
    followup_days: Annotated[int, msgspec.Meta(ge=0, le=365)] = 14
    """Days after a referral is completed or failed before its follow-up is due."""
    answer_days: Annotated[int, msgspec.Meta(ge=0, le=365)] = 3
    """Days a referral may wait for the receiving hub's answer before it is chased."""
    console: bool = False
    """Whether `hubnode run` also serves the staff console (docs/console.md)."""
    console_host: str = "127.0.0.1"
    console_port: Port = 8470
    console_insecure_http: bool = False
    """Cookies without ``Secure``, for plain http on a loopback address (no TLS proxy)."""
    trusted_proxies: tuple[str, ...] = ()
    """IP addresses or CIDR networks of the reverse proxies whose ``X-Forwarded-For`` the
    console believes; from any other peer it is ignored (docs/console.md)."""
    storage_budget_mb_per_day: Annotated[float, msgspec.Meta(gt=0, le=1_000_000)] = 20.0
    """MB (10⁶ bytes) of records one other hub may send this node in a UTC day before the
    node warns (status, console). Only a warning: nothing is dropped."""

    def __post_init__(self) -> None:
        check_nats_url(self.nats_url)  # a ValueError: msgspec reports it as invalid config
        for proxy in self.trusted_proxies:
            proxy_network(proxy)

    @property
    def storage_budget_bytes(self) -> int:
        return round(self.storage_budget_mb_per_day * 1_000_000)


def proxy_network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """The network ``text`` (an address is a network of one) names in ``trusted_proxies``;
    ValueError saying how to write it."""
    try:
        return ipaddress.ip_network(text)
    except ValueError as e:
        raise ValueError(
            f"trusted_proxies: {text!r} is not an IP address or network ({e}); write an "
            'address as "127.0.0.1" or "::1", a network as "10.0.0.0/24"'
        ) from None


class HubFolder:
    """An initialised hub data folder."""

    def __init__(self, path: Path, config: Config) -> None:
        self.path = path
        self.config = config
        self.strict_keys = False
        """Refuse, rather than warn about, secret files other users may read or write
        (``hubnode run --strict``, or ``HUBNODE_STRICT=1`` for every command)."""

    @property
    def hub(self) -> bytes:
        return parse_hub(self.config.hub_id)

    @property
    def log_path(self) -> Path:
        return self.path / LOG_FILE

    @classmethod
    def init(cls, path: Path, *, name: str, network: str, nats_url: str = EMBEDDED) -> HubFolder:
        """Create a new hub in ``path`` (which may exist, but must not hold a hub).

        Raises ValueError for an invalid name or network, ConfigError if a hub is there.
        """
        for existing in (CONFIG_FILE, KEY_FILE, LOG_FILE):
            if (path / existing).exists():
                raise ConfigError(
                    f"{path} already holds a hub ({existing} exists); refusing to overwrite it. "
                    "Use another --data folder."
                )
        key = SigningKey.generate()
        config = Config(
            name=name, network=network, hub_id=hub_display(key.public), nats_url=nats_url
        )
        try:
            config = msgspec.convert(msgspec.to_builtins(config), Config)
        except msgspec.ValidationError as e:
            raise ValueError(f"invalid hub settings: {e}") from None
        (path / "keys").mkdir(parents=True, exist_ok=True, mode=0o700)
        key.save(path / KEY_FILE)
        folder = cls(path, config)
        folder.save_config()
        return folder

    @classmethod
    def open(cls, path: Path) -> HubFolder:
        cfg = path / CONFIG_FILE
        try:
            text = cfg.read_bytes()
        except FileNotFoundError:
            raise ConfigError(
                f"{path} is not a hub data folder (no {CONFIG_FILE}); create one with "
                f"`hubnode init --data {path} --name NAME --network NET`"
            ) from None
        except OSError as e:
            raise ConfigError(f"cannot read {cfg}: {e.strerror}") from e
        try:
            # Some editors start a UTF-8 file with a BOM, which TOML readers refuse.
            config = msgspec.toml.decode(text.removeprefix(UTF8_BOM), type=Config)
        except UnicodeDecodeError as e:
            raise ConfigError(
                f"{cfg} is not UTF-8 text (at byte {e.start}): save it as UTF-8, "
                "or restore the file `hubnode init` wrote from a backup"
            ) from None
        except RecursionError:
            raise ConfigError(f"{cfg} is invalid: nested too deeply to read") from None
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            raise ConfigError(f"{cfg} is invalid: {e}") from None
        folder = cls(path, config)
        folder.strict_keys = os.environ.get(STRICT_ENV, "") not in ("", "0")
        return folder

    def save_config(self) -> None:
        """Write the config atomically (temp file, fsync, rename)."""
        data: dict[str, Any] = msgspec.to_builtins(self.config)
        text = _HEADER.encode() + msgspec.toml.encode(data)
        tmp = self.path / (CONFIG_FILE + ".tmp")
        with open(tmp, "wb") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path / CONFIG_FILE)

    def add_trusted(self, hub: bytes, name: str = "") -> bool:
        """Add ``hub`` to the local trust list and save; False if it was there already."""
        shown = hub_display(hub)
        if any(t.id == shown for t in self.config.trust):
            return False
        trust = (*self.config.trust, TrustedHub(id=shown, name=name))
        self.config = msgspec.structs.replace(self.config, trust=trust)
        self.save_config()
        return True

    def key(self) -> SigningKey:
        key = SigningKey.load(self.path / KEY_FILE, strict=self.strict_keys)
        if key.public != self.hub:
            raise ConfigError(
                f"{self.path / KEY_FILE} is not the key of {self.config.hub_id} named in "
                f"{CONFIG_FILE}"
            )
        return key

    async def open_log(self, *, with_key: bool = True, **options: Any) -> EventLog:
        """Open this hub's event log (with the signing key unless ``with_key`` is False)."""
        return await EventLog.open(
            self.log_path,
            net=self.config.network,
            key=self.key() if with_key else None,
            **options,
        )
