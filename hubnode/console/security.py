"""The console's safety nets that are not about staff accounts: response headers, the
login rate limit, and token comparison.

Headers: a Content-Security-Policy that allows only this site's own stylesheet and
script files (no inline script or style, no framing), no referrer, no MIME sniffing, and
``no-store`` on every page so personal details are not kept in a shared browser's cache.
"""

from __future__ import annotations

import hmac
from collections import deque
from collections.abc import Callable
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hubnode.console.staff import staff_key

CSP: Final = (
    "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS: Final[list[tuple[bytes, bytes]]] = [
    (b"content-security-policy", CSP.encode()),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
]
_HSTS: Final = (b"strict-transport-security", b"max-age=31536000")


class SecurityHeaders:
    """ASGI middleware adding the headers above to every response (``no-store`` to every
    page but the static files; HSTS when the console is served over TLS)."""

    def __init__(self, app: ASGIApp, *, https: bool) -> None:
        self.app = app
        self.https = https

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith("/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.lower() not in {name for name, _ in _HEADERS}
                ]
                headers += _HEADERS
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                if self.https:
                    headers.append(_HSTS)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


def same_token(given: str | None, expected: str | None) -> bool:
    """Constant-time equality of two tokens; False when either is missing or empty."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


class LoginLimiter:
    """Failed sign-ins counted per account name and per client address over a window.

    Past ``per_account`` failures for one name, or ``per_address`` from one address,
    within ``window`` seconds, sign-in is refused until the oldest failure leaves the
    window — even with the right password, so guessing cannot go on slowly either. A
    name is counted by its :func:`~hubnode.console.staff.staff_key`, the key its account
    is looked up by, so no way of writing it gets more guesses. Kept in memory: a restart
    forgets it, and the table is capped so a flood of names cannot fill memory.
    """

    MAX_KEYS: Final = 10_000

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        per_account: int = 5,
        per_address: int = 20,
        window: float = 15 * 60,
    ) -> None:
        self._clock = clock
        self._limits = {"account": per_account, "address": per_address}
        self.window = window
        self._failures: dict[tuple[str, str], deque[float]] = {}

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        times = self._failures.get(key, deque())
        while times and now - times[0] >= self.window:
            times.popleft()
        if not times:
            self._failures.pop(key, None)
        return times

    def blocked(self, account: str, address: str) -> tuple[str, float] | None:
        """(``account`` or ``address``, seconds until a sign-in is allowed again) if either
        is over its limit; None if a sign-in may be tried."""
        now = self._clock()
        for what, value in (("account", staff_key(account)), ("address", address)):
            times = self._recent((what, value), now)
            if len(times) >= self._limits[what]:
                return what, self.window - (now - times[0])
        return None

    def failed(self, account: str, address: str) -> None:
        now = self._clock()
        if len(self._failures) >= self.MAX_KEYS:
            for key in list(self._failures):
                self._recent(key, now)
        for key in (("account", staff_key(account)), ("address", address)):
            if len(self._failures) < self.MAX_KEYS or key in self._failures:
                self._failures.setdefault(key, deque()).append(now)

    def succeeded(self, account: str) -> None:
        """A right password clears the name's failures (not the address's)."""
        self._failures.pop(("account", staff_key(account)), None)
