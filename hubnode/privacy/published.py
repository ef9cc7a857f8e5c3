"""Other hubs' seal keys, as they published them in their signed ``hub.*`` events.

A sender seals a person's data key to each consented hub's latest published seal key, so
it must read the newest one: a hub rotates its key after an erasure (crypto-shredding),
and a box sealed to a retired key can never be opened (docs/privacy.md).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from hubnode.errors import PrivacyError
from hubnode.events.ids import hub_display
from hubnode.events.network import HubProfileUpdated, HubRegistered
from hubnode.store.log import EventLog

HUB_KINDS: Final = ("hub.registered", "hub.profile_updated")
"""The kinds by which a hub publishes its seal key."""
PAGE: Final = 500


async def published_seal_key(log: EventLog, hub: bytes) -> bytes | None:
    """The latest seal key ``hub`` published in its own events, or None."""
    return (await read_profile(log, hub, HubProfile())).latest


@dataclass
class HubProfile:
    """Has a hub registered, its latest published seal key: read up to log pos ``after``."""

    registered: bool = False
    latest: bytes | None = None
    after: int = 0


async def read_profile(log: EventLog, hub: bytes, seen: HubProfile) -> HubProfile:
    """``seen`` brought up to date with ``hub``'s events stored since (pos only grows)."""
    while page := await log.events(after_pos=seen.after, hub=hub, kind=HUB_KINDS, limit=PAGE):
        for ev in page:
            body = ev.body
            seen.registered = seen.registered or isinstance(body, HubRegistered)
            if isinstance(body, (HubRegistered, HubProfileUpdated)) and body.seal_key is not None:
                seen.latest = bytes(body.seal_key)  # stored in seq order: last wins
        seen.after = page[-1].pos
        if len(page) < PAGE:  # a short page is the last: no second query to learn it
            break
    return seen


class SealKeyBook:
    """Hubs' latest published seal keys, kept between lookups on one log.

    A hub's first lookup reads its ``hub.*`` events (an index walk over its events, as
    :func:`published_seal_key` does); every later lookup reads only the ``hub.*`` events
    of any hub stored since the one before, in one query, and nothing at all when the
    log's last ``pos`` has not moved. It asks the log every time, so a key is never stale,
    whoever stored the change: this connection, gossip through it, or another process.
    (SQLite's ``data_version`` would miss this connection's own commits.)
    """

    def __init__(self) -> None:
        self._keys: dict[bytes, bytes | None] = {}
        self._upto = 0
        """Every hub in ``_keys`` has had its events up to this log pos read."""
        self._lock = asyncio.Lock()
        """One lookup at a time: a hub half read must not look keyless to another task."""

    async def lookup(self, log: EventLog, hubs: Iterable[bytes]) -> dict[bytes, bytes | None]:
        """Each of ``hubs``' latest published seal key, None where it published none."""
        async with self._lock:
            # Read before the events: what is stored after it is read (again) next time.
            # Reading an event twice is harmless: per hub, the last key in pos order wins.
            upto = await log.last_pos()
            if self._keys and upto > self._upto:
                await self._read(log, None, self._upto)
            for hub in hubs:
                if hub not in self._keys:
                    self._keys[hub] = None
                    await self._read(log, hub, 0)
            self._upto = upto
            return {hub: self._keys[hub] for hub in hubs}

    async def _read(self, log: EventLog, hub: bytes | None, after: int) -> None:
        while page := await log.events(after_pos=after, hub=hub, kind=HUB_KINDS, limit=PAGE):
            for ev in page:
                body = ev.body
                if (
                    isinstance(body, (HubRegistered, HubProfileUpdated))
                    and body.seal_key is not None
                ):
                    # Stored in seq order per hub: the last one wins. A hub first seen
                    # here is known from now on: nothing before this key matters.
                    self._keys[ev.hub] = bytes(body.seal_key)
            after = page[-1].pos
            if len(page) < PAGE:
                break


_books: weakref.WeakKeyDictionary[EventLog, SealKeyBook] = weakref.WeakKeyDictionary()
"""The book of each open log, so that every writer on it shares one: a node's console
makes a new casework per request, a long-running importer calls ``seal_keys`` per person."""


async def seal_keys(
    log: EventLog, hubs: Iterable[bytes], book: SealKeyBook | None = None
) -> dict[bytes, bytes]:
    """Each hub's latest published seal key; PrivacyError naming any hub without one.

    Looked up in ``log``'s own :class:`SealKeyBook`, kept while the log object lives, or
    in ``book`` if given (a fresh one reads as if nothing had been kept).
    """
    if book is None:
        book = _books.get(log)
        if book is None:
            book = _books[log] = SealKeyBook()
    wanted = list(dict.fromkeys(hubs))
    latest = await book.lookup(log, wanted)
    found = {hub: key for hub, key in latest.items() if key is not None}
    missing = [hub_display(hub) for hub, key in latest.items() if key is None]
    if missing:
        raise PrivacyError(
            f"no seal key known for {', '.join(missing)}: a hub publishes one when it runs "
            "this hubnode version (`hubnode run`) after registering (hub.registered), and it "
            "reaches this hub by gossip"
        )
    return found


__all__ = [
    "HUB_KINDS",
    "HubProfile",
    "SealKeyBook",
    "published_seal_key",
    "read_profile",
    "seal_keys",
]
