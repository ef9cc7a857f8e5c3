"""The console's ASGI application: its routes, its lifespan and its safety headers.

:func:`create_app` builds it for one hub folder. The lifespan opens the staff accounts
and the hub's casework (log, keyring, views) once, for every request to share; a console
inside ``hubnode run`` is given the node's own log and keyring instead
(:mod:`hubnode.console.server`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Final

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from hubnode.config import HubFolder
from hubnode.console.acting import StaffCasework
from hubnode.console.pages import (
    auth,
    directory,
    followups,
    people,
    referrals,
    skills,
    tenders,
    today,
)
from hubnode.console.security import SecurityHeaders
from hubnode.console.staff import StaffStore
from hubnode.console.web import Console, Ctx, Settings

STATIC: Final = Path(__file__).parent / "static"
MAX_BODY: Final = 256 * 1024
"""The largest form accepted: an enquiry with long notes is a few kilobytes."""

CaseworkOpener = Callable[[HubFolder], AbstractAsyncContextManager[StaffCasework]]


async def _favicon(request: Request) -> Response:
    return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")


def routes() -> list[BaseRoute]:
    found: list[BaseRoute] = []
    for module in (auth, today, people, referrals, followups, directory, skills, tenders):
        found += module.routes
    found.append(Mount("/static", StaticFiles(directory=STATIC), name="static"))
    # Browsers ask for /favicon.ico on pages that name no icon (the printable directory,
    # shared with the CLI, names none); a 404 there would be an error in every console.
    found.append(Route("/favicon.ico", _favicon))
    return found


async def _not_found(request: Request, exc: Exception) -> Response:
    ctx = Ctx(request, request.app.state.console)
    status = exc.status_code if isinstance(exc, HTTPException) else 404
    if status == 405:
        return ctx.refuse(405, "Not allowed", "That page cannot be used this way.")
    return ctx.refuse(404, "Page not found", "Check the address, or start again from Today.")


def create_app(
    folder: HubFolder,
    settings: Settings | None = None,
    *,
    casework: CaseworkOpener = StaffCasework.open,
    clock: Callable[[], float] = time.time,
) -> Starlette:
    """The console of the hub in ``folder``. ``casework`` opens the casework the pages
    act through (default: the folder's own log, keyring and views)."""
    chosen = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        with StaffStore.open(folder.path, clock=lambda: int(clock() * 1000)) as staff:
            async with casework(folder) as cw:
                await cw.refresh()
                app.state.console = Console(folder, staff, cw, chosen, clock)
                yield

    return Starlette(
        routes=routes(),
        middleware=[Middleware(SecurityHeaders, https=chosen.https)],
        exception_handlers={404: _not_found, 405: _not_found},
        lifespan=lifespan,
        max_body_size=MAX_BODY,
    )
