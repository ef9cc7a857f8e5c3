"""How a console page is served: the session, the role check, the CSRF check, one action
at a time, and the page rendered — in one place, so no route can skip a step.

Every route is made with :func:`page`, which names the permission it needs
(:data:`~hubnode.console.permissions.PERMISSIONS`). Signed-out visitors are sent to the
sign-in page; a role without the permission gets a "not allowed" page (403); a POST whose
form does not carry the session's CSRF token gets a 403 page and does nothing. Errors are
logged by type only — never a message, form value or path, which could name a person.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from hubnode.casework import NotFound
from hubnode.config import HubFolder
from hubnode.console.acting import StaffCasework
from hubnode.console.permissions import DESCRIPTIONS, Permission, allowed
from hubnode.console.security import LoginLimiter, same_token
from hubnode.console.staff import Account, Session, StaffStore
from hubnode.errors import HubnodeError
from hubnode.events.fields import REFUSED_IN_TEXT
from hubnode.events.ids import HUB_PREFIX, hub_display, short_hub

log = logging.getLogger("hubnode.console")

TEMPLATES: Final = Path(__file__).parent / "templates"
CSRF_FIELD: Final = "csrf"


@dataclass(frozen=True)
class Settings:
    """How the console runs. ``https``: the browser reaches it over TLS (directly or
    through a reverse proxy): cookies are ``Secure`` and HSTS is sent. Only plain http on
    loopback may turn it off (``hubnode console --insecure-http``)."""

    https: bool = True
    idle_minutes: float = 30
    absolute_hours: float = 10
    login_per_account: int = 5
    login_per_address: int = 20
    login_window_minutes: float = 15


def cookie_name(purpose: Literal["session", "login"], hub: bytes, *, secure: bool) -> str:
    """``hubnode-session-`` or ``hubnode-login-`` and the first 10 base32 characters of
    the hub's id, with ``__Host-`` in front when the cookie is ``Secure``.

    Browsers keep cookies per host, not per port: named for the hub, the cookies of two
    consoles on one host do not overwrite each other. ``__Host-``: the browser keeps the
    cookie only if it is Secure, for this host alone (no Domain), on path ``/``.
    """
    name = f"hubnode-{purpose}-{short_hub(hub).removeprefix(HUB_PREFIX)}"
    return f"__Host-{name}" if secure else name


class Console:
    """What every page works with: the hub, its casework, staff accounts, clock."""

    def __init__(
        self,
        folder: HubFolder,
        staff: StaffStore,
        casework: StaffCasework,
        settings: Settings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.folder = folder
        self.staff = staff
        self.casework = casework
        self.settings = settings
        self.clock = clock
        self.cookie = cookie_name("session", folder.hub, secure=settings.https)
        """The session cookie's name (:func:`cookie_name`)."""
        self.login_cookie = cookie_name("login", folder.hub, secure=settings.https)
        """The sign-in form's CSRF cookie's name."""
        self.lock = asyncio.Lock()
        """One action at a time: a page reads the views it just refreshed, and an action's
        events carry the staff member who asked for it."""
        self.limiter = LoginLimiter(
            clock,
            per_account=settings.login_per_account,
            per_address=settings.login_per_address,
            window=settings.login_window_minutes * 60,
        )
        self.templates = Environment(
            loader=FileSystemLoader(TEMPLATES),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
            finalize=_shown,
        )
        self.templates.filters["when"] = when
        self.templates.globals["person_url"] = person_url
        self.templates.filters["urlpart"] = urlpart

    @property
    def idle_ms(self) -> int:
        return int(self.settings.idle_minutes * 60_000)

    @property
    def absolute_ms(self) -> int:
        return int(self.settings.absolute_hours * 3_600_000)

    def now_ms(self) -> int:
        return int(self.clock() * 1000)


@dataclass
class Ctx:
    """One request as a page handler sees it."""

    request: Request
    console: Console
    session: Session | None = None
    token: str | None = None
    form: FormData | None = None
    errors: dict[str, str] = field(default_factory=dict)
    """Field name → what is wrong with it, for the form being shown again."""

    @property
    def account(self) -> Account:
        assert self.session is not None, "a page behind sign-in"
        return self.session.account

    @property
    def cw(self) -> StaffCasework:
        return self.console.casework

    @property
    def me(self) -> bytes:
        return self.console.folder.hub

    def can(self, permission: Permission) -> bool:
        return self.session is not None and allowed(self.account.role, permission)

    def value(self, name: str) -> str:
        """A form field's value, stripped ('' when absent)."""
        got = self.form.get(name) if self.form is not None else None
        return got.strip() if isinstance(got, str) else ""

    def values(self, name: str) -> list[str]:
        if self.form is None:
            return []
        return [v.strip() for v in self.form.getlist(name) if isinstance(v, str) and v.strip()]

    def render(self, template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
        base = {
            "hub_name": self.console.folder.config.name,
            "staff": self.session.account if self.session else None,
            "csrf": self.session.csrf if self.session else "",
            # A form shown again after a POST is no place for the last action's message.
            "flash": self.session.flash if self.session and self.request.method == "GET" else None,
            "path": self.request.url.path,
            "can": self.can,
            "errors": self.errors,
            "form": self.form,
            "value": self.value,
            "values": self.values,
        }
        html = self.console.templates.get_template(template).render({**base, **context})
        return HTMLResponse(html, status_code=status)

    def redirect(self, url: str, flash: str | None = None) -> RedirectResponse:
        """See Other (303) to ``url``, with ``flash`` shown once on the page it leads to."""
        if flash is not None and self.token is not None:
            self.console.staff.flash(self.token, flash)
        return RedirectResponse(url, status_code=303)

    def refuse(self, status: int, title: str, message: str) -> HTMLResponse:
        return self.render("error.html", status=status, title=title, message=message)


Handler = Callable[[Ctx], Awaitable[Response]]


def page(
    path: str,
    permission: Permission | None,
    *,
    methods: tuple[str, ...] = ("GET",),
    locked: bool = True,
) -> Callable[[Handler], Route]:
    """A route to ``handler`` that checks sign-in, ``permission`` and, on POST, the CSRF
    token before the handler runs (``None``: the sign-in page, which checks its own).
    ``locked``: run it under the console's lock (every page that reads or acts on the
    hub's casework; not sign-in, whose password check must not hold up others)."""

    def route(handler: Handler) -> Route:
        async def endpoint(request: Request) -> Response:
            console: Console = request.app.state.console
            ctx = Ctx(request, console)
            if permission is not None:
                refused = await _signed_in(ctx, permission)
                if refused is not None:
                    return refused
            try:
                if not locked:
                    return await handler(ctx)
                async with console.lock:
                    return await handler(ctx)
            except NotFound as e:
                return ctx.refuse(404, "Not found", plain(str(e)))
            except HubnodeError as e:
                return ctx.refuse(409, "That cannot be done", plain(str(e)))
            except Exception as e:
                log.error("%s in %s", type(e).__name__, handler.__name__)
                return ctx.refuse(
                    500,
                    "Something went wrong",
                    "The page could not be shown. If you were saving something, check whether "
                    "it was saved before you try again.",
                )

        endpoint.__name__ = handler.__name__
        return Route(path, endpoint, methods=list(methods), name=handler.__name__)

    return route


async def _signed_in(ctx: Ctx, permission: Permission) -> Response | None:
    """Load the session; a response refusing the request, or None to go on."""
    request, console = ctx.request, ctx.console
    token = request.cookies.get(console.cookie)
    session = (
        console.staff.session(token, idle_ms=console.idle_ms, absolute_ms=console.absolute_ms)
        if token
        else None
    )
    if session is None:
        return RedirectResponse(f"/login?next={quote(_here(request), safe='/:')}", status_code=303)
    ctx.session, ctx.token = session, token
    if not allowed(session.account.role, permission):
        role = session.account.role
        return ctx.refuse(
            403,
            "Not allowed",
            f"Staff with the {role} role cannot {DESCRIPTIONS[permission]}. "
            "Ask a coordinator or an admin.",
        )
    if request.method == "POST":
        ctx.form = await request.form()
        given = ctx.form.get(CSRF_FIELD)
        if not same_token(given if isinstance(given, str) else None, session.csrf):
            return ctx.refuse(
                403,
                "This form has expired",
                "Nothing was saved. Go back, reload the page and try again.",
            )
    return None


_CLI_HINT: Final = re.compile(
    r"(?:[;,.] (?:if they agree, )?(?:record it first|check the id with|find one with|see|"
    r"refer anyway with|choose one with)[^;]*)"
    r"|(?: \(--[a-z-]+\))|(?:^--[a-z-]+(?: '[^']*')?: )",
    re.IGNORECASE,
)


def plain(message: str) -> str:
    """A refusal from :mod:`hubnode.casework` without its command-line hints (``--area``,
    ```hubnode …```), which mean nothing in a page; first letter capitalised."""
    text = _CLI_HINT.sub("", message).strip()
    return text[:1].upper() + text[1:] if text else message


def _shown(value: object) -> object:
    """Every value a page prints, with the characters body text refuses (control, bidi,
    zero-width; docs/protocol.md, "Human text") as U+FFFD: HTML escaping leaves them in,
    and views built before the rule, or a hand-edited config, may still hold them."""
    if isinstance(value, str) and not hasattr(value, "__html__"):  # not markup already made
        return REFUSED_IN_TEXT.sub("\ufffd", value)
    return value


def _here(request: Request) -> str:
    """Where a signed-out GET should come back to: its path as sent, still encoded (an id
    holding ``%2F..`` must not turn into dot segments), and its query; "/" for a POST."""
    if request.method != "GET":
        return "/"
    raw = request.scope.get("raw_path")
    path = raw.decode("latin-1") if isinstance(raw, bytes) else quote(request.url.path)
    query = request.url.query
    return f"{path}?{query}" if query else path


def urlpart(value: object) -> str:
    """``value`` (an id) as one part of a link's path or query, percent-encoded: an id
    holding ``/``, ``..``, ``?``, ``#`` or ``&`` cannot make a link lead to another page.
    Colons stay (``/referrals/hub:…:ID``): after a path's first ``/`` or in a query value
    they mean nothing. Every link and redirect that carries an id goes through it."""
    return quote(str(value), safe=":")


def person_url(subject: str, owner: bytes | None = None) -> str:
    """A person's page; with ``owner``, the hub that logged their enquiry. Links carry the
    owner wherever it is known, since another hub may reuse a pseudonym."""
    url = f"/people/{urlpart(subject)}"
    return url if owner is None else f"{url}?owner={urlpart(hub_display(owner))}"


def when(ms: int | None) -> str:
    """A moment (ms since the epoch) in the server's local time: ``3 Feb 2031, 09:30``."""
    if ms is None:
        return "-"
    moment = dt.datetime.fromtimestamp(ms / 1000)
    return f"{moment.day} {moment:%b %Y, %H:%M}"
