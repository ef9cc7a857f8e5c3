"""Signing in and out.

The sign-in form carries its own CSRF token (there is no session yet): a random value in a
short-lived ``SameSite=Strict`` cookie that the form must repeat. Failed sign-ins are
counted per name (by its :func:`~hubnode.console.staff.staff_key`, as the account is looked
up) and per client address (:class:`~hubnode.console.security.LoginLimiter`; the address
is the socket's, or from ``X-Forwarded-For`` sent by a trusted proxy:
:mod:`hubnode.console.server`); the log says only that one failed, never the name tried or
the address.
"""

from __future__ import annotations

import logging
import secrets
from typing import Final

from starlette.responses import RedirectResponse, Response

from hubnode.console.security import same_token
from hubnode.console.staff import MAX_NAME
from hubnode.console.web import CSRF_FIELD, Ctx, page

log = logging.getLogger("hubnode.console")

LOGIN_COOKIE_SECONDS: Final = 3600


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this site only, never another site."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    return target


@page("/login", None, methods=("GET", "POST"), locked=False)
async def login(ctx: Ctx) -> Response:
    request, console = ctx.request, ctx.console
    settings = console.settings
    target = safe_next(request.query_params.get("next"))
    token = request.cookies.get(console.cookie)
    if token and console.staff.session(
        token, idle_ms=console.idle_ms, absolute_ms=console.absolute_ms
    ):
        return RedirectResponse(target, status_code=303)
    form_token = request.cookies.get(console.login_cookie) or secrets.token_urlsafe(32)

    def show(status: int = 200, notice: str | None = None) -> Response:
        response = ctx.render(
            "login.html",
            status=status,
            title="Sign in",
            login_csrf=form_token,
            next=target,
            notice=notice,
            signed_out="signed-out" in request.query_params,
        )
        response.set_cookie(
            console.login_cookie,
            form_token,
            max_age=LOGIN_COOKIE_SECONDS,
            path="/",
            secure=settings.https,
            httponly=True,
            samesite="strict",
        )
        return response

    if request.method == "GET":
        return show()
    ctx.form = await request.form()
    given = ctx.form.get(CSRF_FIELD)
    if not same_token(given if isinstance(given, str) else None, request.cookies.get(
        console.login_cookie
    )):  # fmt: skip
        return show(403, "This sign-in form has expired. Please try again.")
    name, password = ctx.value("name"), ctx.form.get("password")
    password = password if isinstance(password, str) else ""
    if not name:
        ctx.errors["name"] = "Enter your name"
    elif len(" ".join(name.split())) > MAX_NAME:  # no account's is: and it bounds the limiter
        ctx.errors["name"] = f"Enter a name of at most {MAX_NAME} characters"
    if not password:
        ctx.errors["password"] = "Enter your password"
    if ctx.errors:
        return show(400)
    address = request.client.host if request.client else "unknown"
    blocked = console.limiter.blocked(name, address)
    if blocked is not None:
        what, seconds = blocked
        minutes = max(1, round(seconds / 60))
        who = "this name" if what == "account" else "this computer"
        log.warning("sign-in refused: too many failures for one %s", what)
        return show(
            429,
            f"Too many failed sign-ins for {who}. Wait {minutes} minute"
            f"{'' if minutes == 1 else 's'} and try again, or ask an admin to check your "
            "account.",
        )
    account = await console.staff.authenticate(name, password)
    if account is None:
        console.limiter.failed(name, address)
        log.info("a sign-in failed")
        ctx.errors["password"] = "The name or the password is not right"
        return show(401)
    console.limiter.succeeded(name)
    session = console.staff.start_session(account)
    log.info("%s signed in", account.pseudonym)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        console.cookie, session, path="/", secure=settings.https, httponly=True, samesite="strict"
    )
    response.delete_cookie(console.login_cookie, path="/", secure=settings.https, httponly=True)
    return response


@page("/logout", "view", methods=("POST",))
async def logout(ctx: Ctx) -> Response:
    console = ctx.console
    assert ctx.token is not None
    console.staff.end_session(ctx.token)
    log.info("%s signed out", ctx.account.pseudonym)
    response = RedirectResponse("/login?signed-out", status_code=303)
    response.delete_cookie(console.cookie, path="/", secure=console.settings.https, httponly=True)
    return response


routes = [login, logout]
