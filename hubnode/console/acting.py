"""The hub's casework with the acting staff member's pseudonym on what it appends.

Every pathway body has an optional ``staff`` field (``st-…``, never a name). The console
runs the same actions as the command line (:class:`~hubnode.casework.Casework`) and only
adds the pseudonym of whoever is signed in to the bodies those actions append.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import msgspec

from hubnode.casework import Casework
from hubnode.events.kinds import Body
from hubnode.store.log import Appended


def with_staff(body: Body, staff: str) -> Body:
    """``body`` naming ``staff`` as who acted, if its kind has a ``staff`` field."""
    if "staff" not in body.__struct_fields__:
        return body
    return msgspec.structs.replace(body, staff=staff)


class StaffCasework(Casework):
    """:class:`Casework` whose appends record the staff member set with :meth:`acting`.

    One instance serves every request; the console runs one action at a time (under its
    lock), so the pseudonym set for an action is the one its events carry.
    """

    staff: str | None = None

    @contextmanager
    def acting(self, staff: str) -> Iterator[StaffCasework]:
        self.staff = staff
        try:
            yield self
        finally:
            self.staff = None

    async def _append(self, items: list[tuple[str, Body]]) -> list[Appended]:
        if self.staff is not None:
            items = [(kind, with_staff(body, self.staff)) for kind, body in items]
        return await super()._append(items)
