"""Serving the console with uvicorn: on its own (``hubnode console``) or inside the node
(``console = true`` in hubnode.toml, served by ``hubnode run``).

uvicorn's access log is off — request lines would put client addresses and paths in the
server's log — and its own signal handling too: the hubnode command that runs it owns
SIGINT and SIGTERM and stops the server with the node.

A client's address — what the per-address sign-in limit counts — is the socket's peer
address, unless that peer is one of the config's ``trusted_proxies``: then it is the
right-most address in ``X-Forwarded-For`` that is not itself a trusted proxy (each proxy
appends the address it heard from, so what lies to the left of that is the client's to
write). With none trusted, the default, the header is ignored: any client, a local one
too, could otherwise name a fresh address with each guess.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, NoReturn

import uvicorn
from starlette.applications import Starlette

from hubnode.config import HubFolder, proxy_network
from hubnode.console.acting import StaffCasework
from hubnode.console.app import CaseworkOpener, create_app
from hubnode.console.web import Settings
from hubnode.errors import ConfigError

if TYPE_CHECKING:
    from hubnode.node import Attachment, Node

log = logging.getLogger("hubnode.console")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def settings_for(host: str, insecure_http: bool) -> Settings:
    """Plain http (cookies without ``Secure``) only on loopback, and only when asked."""
    if insecure_http and not is_loopback(host):
        raise ConfigError(
            f"the console serves plain http only on a loopback address, not {host}: people's "
            "details would cross the network unencrypted. Put it behind a TLS reverse proxy "
            "(docs/console.md) and leave out --insecure-http / console_insecure_http."
        )
    return Settings(https=not insecure_http)


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the hubnode command owns SIGINT/SIGTERM and stops the server itself

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.should_exit:  # it stops itself when the app's startup failed
            self.ready.set()


class ConsoleServer:
    """uvicorn serving ``app`` on ``host:port`` until :meth:`stop`, believing the
    ``X-Forwarded-For`` and ``X-Forwarded-Proto`` of ``trusted_proxies`` only."""

    def __init__(
        self, app: Starlette, host: str, port: int, *, trusted_proxies: Sequence[str] = ()
    ) -> None:
        proxies = [str(proxy_network(p)) for p in trusted_proxies]
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            access_log=False,
            log_config=None,
            server_header=False,
            # The list, never None: uvicorn would then trust $FORWARDED_ALLOW_IPS or loopback.
            proxy_headers=bool(proxies),
            forwarded_allow_ips=proxies,
        )
        self.server = _Server(config)
        self.host, self.port = host, port
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def of(
        cls,
        folder: HubFolder,
        settings: Settings,
        host: str,
        port: int,
        *,
        casework: CaseworkOpener = StaffCasework.open,
    ) -> ConsoleServer:
        """The console of the hub in ``folder``, trusting the proxies its config names."""
        app = create_app(folder, settings, casework=casework)
        return cls(app, host, port, trusted_proxies=folder.config.trusted_proxies)

    async def start(self) -> None:
        """Serve; return once listening (ConfigError if it cannot start)."""
        self._task = asyncio.create_task(self.server.serve())
        ready = asyncio.ensure_future(self.server.ready.wait())
        await asyncio.wait([ready, self._task], return_when=asyncio.FIRST_COMPLETED)
        if not self.server.ready.is_set():
            ready.cancel()
            await self._failed()
        log.info("staff console at http://%s:%d/", self.host, self.server_port)

    @property
    def server_port(self) -> int:
        """The port bound (``port`` may be 0: any free one)."""
        for server in self.server.servers:
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        return self.port

    async def _failed(self) -> NoReturn:
        assert self._task is not None
        try:
            await self._task
        except SystemExit:  # uvicorn exits when it cannot bind
            raise ConfigError(
                f"the staff console could not listen on {self.host}:{self.port} (in use, or "
                "not an address of this machine?); choose another with --port or console_port"
            ) from None
        raise ConfigError("the staff console could not start; the log above says why")

    async def stop(self) -> None:
        if self._task is None:
            return
        self.server.should_exit = True
        with contextlib.suppress(SystemExit):
            await self._task

    async def wait(self) -> None:
        """Until the server stops by itself (it does not, unless it fails)."""
        if self._task is not None:
            with contextlib.suppress(SystemExit):
                await self._task


async def serve(
    folder: HubFolder, host: str, port: int, settings: Settings, stop: asyncio.Event
) -> None:
    """``hubnode console``: serve the hub's console until ``stop`` is set."""
    server = ConsoleServer.of(folder, settings, host, port)
    await server.start()
    waiting = asyncio.ensure_future(stop.wait())
    serving = asyncio.ensure_future(server.wait())
    try:
        await asyncio.wait([waiting, serving], return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiting.cancel()
        await server.stop()
        serving.cancel()


def node_attachments(folder: HubFolder) -> list[Attachment]:
    """What ``hubnode run`` attaches to its node: the console when the config asks."""
    cfg = folder.config
    if not cfg.console:
        return []
    settings_for(cfg.console_host, cfg.console_insecure_http)  # refuse before starting
    return [console_in_node]


@asynccontextmanager
async def console_in_node(node: Node) -> AsyncIterator[None]:
    """The console served beside a running node, over the node's own log and keyring
    (the node keeps the keyring current, so the console's casework does not)."""
    from hubnode.node import projection_runner

    folder = node.folder
    cfg = folder.config
    log_, keyring = node.log, node.keyring
    assert log_ is not None and keyring is not None, "attached after the node started"

    @asynccontextmanager
    async def casework(folder: HubFolder) -> AsyncIterator[StaffCasework]:
        views = projection_runner(folder)
        try:
            yield StaffCasework(folder, log_, keyring, views, keep_keys=False)
        finally:
            views.close()

    settings = settings_for(cfg.console_host, cfg.console_insecure_http)
    server = ConsoleServer.of(
        folder, settings, cfg.console_host, cfg.console_port, casework=casework
    )
    await server.start()
    try:
        yield
    finally:
        await server.stop()
