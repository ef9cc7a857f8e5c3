"""Projections: each hub's own views of the network, built from the signed logs (DESIGN §7).

Built-in projections are listed in :data:`BUILTIN`; third-party ones register through the
entry-point group ``hubnode.projections`` (each entry point names a Projection class).
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Final

from hubnode.projections import directory, feedback, pathway, skills, tenders
from hubnode.projections.base import Projection, ProjectionTx
from hubnode.projections.network import NetworkProjection
from hubnode.projections.runner import BuildStatus, ProjectionError, ProjectionRunner

ENTRY_POINT_GROUP: Final = "hubnode.projections"


BUILTIN: Final[tuple[type[Projection], ...]] = (
    NetworkProjection,
    *directory.PROJECTIONS,
    *skills.PROJECTIONS,
    *tenders.PROJECTIONS,
    *feedback.PROJECTIONS,
    *pathway.PROJECTIONS,
)


def installed_projections() -> list[type[Projection]]:
    """The built-in projections and every plugin installed in this environment."""
    found: list[type[Projection]] = list(BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = ep.load()
        except Exception as e:
            raise ProjectionError(
                f"projection plugin {ep.name!r} ({ep.value}) failed to load: {e}"
            ) from e
        if not (isinstance(cls, type) and issubclass(cls, Projection)):
            raise ProjectionError(
                f"projection plugin {ep.name!r} ({ep.value}) is not a hubnode Projection class"
            )
        found.append(cls)
    return found


__all__ = [
    "BUILTIN",
    "ENTRY_POINT_GROUP",
    "BuildStatus",
    "NetworkProjection",
    "Projection",
    "ProjectionError",
    "ProjectionRunner",
    "ProjectionTx",
    "installed_projections",
]
