"""The keyring: this hub's seal keys and the subjects' data keys it holds (DESIGN §8).

Kept in ``keys/keyring.sqlite3`` (mode 0600) beside the signing key, never in the log or
the views, never sent anywhere. SQLite runs with ``secure_delete`` so a destroyed key is
overwritten in the file, and with a rollback journal (no WAL copies left behind).

What :func:`catch_up_keys` does, in log order, for events it has not seen yet:

- ``consent.recorded`` with a box for this hub: opens it with the current seal key and
  keeps the data key; without one (the person's consent no longer names this hub): drops
  the data key. ``consent.withdrawn``: hubs other than the owner drop it.
- ``subject.erased`` (by the subject's owner): destroys the data key, keeps a tombstone
  with the time, and — if any box for the subject was sealed to this hub's current seal
  key — **rotates the seal key**: a new key is made, the old private key is destroyed and
  the new public key is published in ``hub.profile_updated``. The boxes still in the
  signed logs can then never be opened again, by this software or by anyone holding the
  hub's disk: that is the crypto-shredding. Then it appends ``subject.erasure_confirmed``.

Rotation happens only after every pending event has been read, so boxes already stored
here are opened with the old key first. A box sealed to a retired key that arrives later
(its sender had not yet seen the new key) cannot be opened; it is recorded as unreadable
and the owner can record the consent again.

The keyring remembers how far it has read the log by ``pos``, with the id of the event
there (:func:`check_log`). A log without that event there is not the log it read (a backup
put back, a log lost and fetched again, another hub's copy): its events have other
positions, and an erasure the keyring never saw may sit below the checkpoint. The keyring
cannot be rebuilt (the seal keys that opened old boxes are destroyed), so it reads the log
again from the start, which is safe: an erasure already applied is skipped (no second
confirmation), and a consent or withdrawal no newer than the last one applied for its
subject (``consent_seen``) is skipped, so an old box sealed to a destroyed seal key is not
reported unreadable and an older consent does not undo a later one.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from hubnode.config import HubFolder
from hubnode.crypto import SealKey, check_secret_mode
from hubnode.errors import PrivacyError
from hubnode.events.ids import hub_display
from hubnode.events.network import HubProfileUpdated
from hubnode.events.pathway import (
    ConsentRecorded,
    ConsentWithdrawn,
    SubjectErased,
    SubjectErasureConfirmed,
)
from hubnode.events.verify import Event
from hubnode.privacy.published import (
    HubProfile,
    SealKeyBook,
    published_seal_key,
    read_profile,
    seal_keys,
)
from hubnode.privacy.seal import open_box
from hubnode.store.log import EventLog, same_event

logger = logging.getLogger(__name__)

KEYRING_FILE: Final = "keys/keyring.sqlite3"
KINDS: Final = ("consent.recorded", "consent.withdrawn", "subject.erased")
PAGE: Final = 500

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS seal_keys (
    public BLOB PRIMARY KEY, private BLOB NOT NULL, created_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS subject_keys (
    owner BLOB NOT NULL, subject TEXT NOT NULL, data_key BLOB NOT NULL,
    obtained_ms INTEGER NOT NULL, PRIMARY KEY (owner, subject));
CREATE TABLE IF NOT EXISTS boxed (
    owner BLOB NOT NULL, subject TEXT NOT NULL, seal_public BLOB NOT NULL,
    PRIMARY KEY (owner, subject, seal_public));
CREATE TABLE IF NOT EXISTS erased (
    owner BLOB NOT NULL, subject TEXT NOT NULL, event_seq INTEGER NOT NULL,
    destroyed_ms INTEGER NOT NULL, held_key INTEGER NOT NULL,
    confirmed_seq INTEGER, PRIMARY KEY (owner, subject));
CREATE TABLE IF NOT EXISTS unreadable (
    owner BLOB NOT NULL, subject TEXT NOT NULL, event_seq INTEGER NOT NULL,
    why TEXT NOT NULL, PRIMARY KEY (owner, subject, event_seq));
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
-- The owner's last consent or withdrawal applied for each subject (by seq): reading the
-- log again (check_log) skips what is no newer. Deleted on erasure: the tombstone stays.
CREATE TABLE IF NOT EXISTS consent_seen (
    owner BLOB NOT NULL, subject TEXT NOT NULL, event_seq INTEGER NOT NULL,
    PRIMARY KEY (owner, subject));
-- The event at the checkpoint (meta "pos"): which log the keyring read. One row at most.
CREATE TABLE IF NOT EXISTS checkpoint_event (pos INTEGER PRIMARY KEY, id BLOB NOT NULL);
"""


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _connect(path: Path, *, same_thread: bool = True) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=same_thread)
    db.execute("PRAGMA secure_delete = ON")
    db.execute("PRAGMA journal_mode = DELETE")
    db.execute("PRAGMA synchronous = FULL")
    return db


def _keep(db: sqlite3.Connection, keys: Iterable[tuple[bytes, str, bytes]]) -> list[str]:
    """Store data keys in one transaction, except erased subjects': those are returned."""
    refused = []
    db.execute("BEGIN IMMEDIATE")
    try:
        now = _now_ms()
        for owner, subject, data_key in keys:
            if db.execute(
                "SELECT 1 FROM erased WHERE owner = ? AND subject = ?", (owner, subject)
            ).fetchone():
                refused.append(subject)
                continue
            db.execute(
                "INSERT OR REPLACE INTO subject_keys VALUES (?, ?, ?, ?)",
                (owner, subject, data_key, now),
            )
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return refused


@dataclass
class KeyCatchUp:
    """What one :func:`catch_up_keys` did."""

    opened: int = 0
    dropped: int = 0
    erased: list[tuple[bytes, str]] = field(default_factory=list)
    unreadable: int = 0
    rotated: bool = False
    confirmed: int = 0


class Keyring:
    """The local keystore of one hub. Use as a context manager; not shared across threads."""

    def __init__(self, path: Path, db: sqlite3.Connection, me: bytes, net: str) -> None:
        self.path = path
        self._db = db
        self.me = me
        self.net = net
        self._own_profile = HubProfile()
        self._append_lock = asyncio.Lock()
        self._grouped: list[tuple[tuple[bytes, str, bytes], asyncio.Future[None]]] = []
        self._grouping: asyncio.Task[None] | None = None
        self._thread_db: sqlite3.Connection | None = None
        self._loaded: tuple[bytes, SealKey] | None = None

    @classmethod
    def open(cls, folder: HubFolder) -> Keyring:
        """Open (creating on first use, with a fresh seal key) ``folder``'s keyring."""
        path = folder.path / KEYRING_FILE
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.exists():
            # Create it 0600 before SQLite writes a byte of key material into it.
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        try:
            check_secret_mode(path, path.stat().st_mode, "keyring", strict=folder.strict_keys)
        except OSError as e:
            raise PrivacyError(f"cannot open the keyring {path}: {e.strerror}") from e
        try:
            db = _connect(path)
            db.executescript(_SCHEMA)
        except sqlite3.Error as e:
            raise PrivacyError(f"cannot open the keyring {path}: {e}") from e
        ring = cls(path, db, folder.hub, folder.config.network)
        with ring._write():
            if ring._db.execute("SELECT count(*) FROM seal_keys").fetchone()[0] == 0:
                ring._add_seal_key(SealKey.generate())
        return ring

    def close(self) -> None:
        if self._thread_db is not None:
            self._thread_db.close()
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- transactions -------------------------------------------------------------------

    class _Write:
        def __init__(self, db: sqlite3.Connection) -> None:
            self.db = db

        def __enter__(self) -> None:
            self.db.execute("BEGIN IMMEDIATE")  # one writer at a time: node and CLI alike

        def __exit__(
            self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
        ) -> None:
            self.db.execute("COMMIT" if t is None else "ROLLBACK")

    def _write(self) -> Keyring._Write:
        return Keyring._Write(self._db)

    # -- seal keys ----------------------------------------------------------------------

    def _add_seal_key(self, key: SealKey) -> None:
        self._db.execute(
            "INSERT INTO seal_keys VALUES (?, ?, ?)", (key.public, key.private_bytes(), _now_ms())
        )

    @property
    def seal_key(self) -> SealKey:
        """This hub's current seal key (the newest)."""
        row = self._db.execute(
            "SELECT private FROM seal_keys ORDER BY created_ms DESC, rowid DESC LIMIT 1"
        ).fetchone()
        private = bytes(row[0])
        # Read every time (another process may have rotated it), but derived once: making
        # a SealKey computes its public key, an X25519 multiplication (~25 µs).
        if self._loaded is None or self._loaded[0] != private:
            self._loaded = (private, SealKey.from_bytes(private))
        return self._loaded[1]

    def _rotate(self) -> SealKey:
        """Make a new seal key and destroy every older one (inside a write transaction)."""
        new = SealKey.generate()
        self._loaded = None  # drop this process's copy of the old private key too
        self._db.execute("DELETE FROM seal_keys")
        self._add_seal_key(new)
        return new

    # -- data keys ----------------------------------------------------------------------

    def remember(self, owner: bytes, subject: str, data_key: bytes) -> None:
        """Keep the data key of a subject this hub just created (the enquiry's owner)."""
        if self.remember_many([(owner, subject, data_key)]):
            raise PrivacyError(f"subject {subject} was erased; it cannot get a new key")

    def remember_many(self, keys: Iterable[tuple[bytes, str, bytes]]) -> list[str]:
        """:meth:`remember` for many (owner, subject, data key) in one transaction: one
        fsync'd write, not one per subject. Returns the subjects refused because they were
        erased (nothing is kept for them); the others are kept."""
        return _keep(self._db, keys)

    async def remember_grouped(self, owner: bytes, subject: str, data_key: bytes) -> None:
        """:meth:`remember` for a task among several; returns once the key is durable.

        The tasks remembering meanwhile share one transaction, as the log's group commit
        shares one between appends, and it is written on a worker thread: the event loop
        goes on (sealing the next person) while it waits for the disk. Let every call
        return before closing the keyring.
        """
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._grouped.append(((owner, subject, data_key), future))
        if self._grouping is None or self._grouping.done():
            # Runs from the loop's next turn: the tasks woken in this one join the group.
            self._grouping = asyncio.create_task(self._remember_groups())
        await future

    async def _remember_groups(self) -> None:
        while self._grouped:
            group, self._grouped = self._grouped, []
            try:
                refused = set(await asyncio.to_thread(self._keep_on_thread, [k for k, _ in group]))
            except Exception as e:
                for _, future in group:
                    if not future.done():
                        future.set_exception(e)
                continue
            except BaseException:  # cancelled (the loop is closing): so are its callers
                for _, future in [*group, *self._grouped]:
                    future.cancel()
                raise
            for (_, subject, _), future in group:
                if future.done():  # its task was cancelled meanwhile: kept all the same
                    continue
                if subject in refused:
                    future.set_exception(
                        PrivacyError(f"subject {subject} was erased; it cannot get a new key")
                    )
                else:
                    future.set_result(None)

    def _keep_on_thread(self, keys: list[tuple[bytes, str, bytes]]) -> list[str]:
        # A connection of its own: sqlite3 connections are not for sharing across threads,
        # and the loop's connection stays free for reads meanwhile.
        if self._thread_db is None:
            self._thread_db = _connect(self.path, same_thread=False)
        return _keep(self._thread_db, keys)

    def has_key(self, owner: bytes, subject: str) -> bool:
        return (
            self._db.execute(
                "SELECT 1 FROM subject_keys WHERE owner = ? AND subject = ?", (owner, subject)
            ).fetchone()
            is not None
        )

    def data_key(self, owner: bytes, subject: str) -> bytes:
        """The subject's data key; PrivacyError saying why when this hub cannot read it."""
        row = self._db.execute(
            "SELECT data_key FROM subject_keys WHERE owner = ? AND subject = ?", (owner, subject)
        ).fetchone()
        if row is not None:
            return bytes(row[0])
        gone = self._erased(owner, subject)
        if gone is not None:
            raise PrivacyError(
                f"subject {subject} was erased; this hub destroyed its key at "
                f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(gone / 1000))} UTC"
            )
        why = self._db.execute(
            "SELECT why FROM unreadable WHERE owner = ? AND subject = ? ORDER BY event_seq DESC",
            (owner, subject),
        ).fetchone()
        if why is not None:
            raise PrivacyError(f"subject {subject}: {why[0]}")
        raise PrivacyError(
            f"this hub holds no key for subject {subject} of {hub_display(owner)}: the "
            "person's consent does not name this hub"
        )

    def destroyed_at(self, owner: bytes, subject: str) -> int | None:
        """When this hub destroyed the subject's key on erasure (ms), or None."""
        return self._erased(owner, subject)

    def _erased(self, owner: bytes, subject: str) -> int | None:
        row = self._db.execute(
            "SELECT destroyed_ms FROM erased WHERE owner = ? AND subject = ?", (owner, subject)
        ).fetchone()
        return None if row is None else int(row[0])

    def _drop(self, owner: bytes, subject: str) -> bool:
        cur = self._db.execute(
            "DELETE FROM subject_keys WHERE owner = ? AND subject = ?", (owner, subject)
        )
        return cur.rowcount > 0

    # -- checkpoint ---------------------------------------------------------------------

    def _meta(self, key: str) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return 0 if row is None else int(row[0])

    def _set_meta(self, key: str, value: int) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # -- applying the log ---------------------------------------------------------------

    def _set_checkpoint(self, pos: int, event: bytes | None) -> None:
        self._set_meta("pos", pos)
        self._db.execute("DELETE FROM checkpoint_event")
        if event is not None:
            self._db.execute("INSERT INTO checkpoint_event VALUES (?, ?)", (pos, event))

    def apply(
        self, events: Iterable[Event], upto: int, event: bytes | None, done: KeyCatchUp
    ) -> None:
        """Apply a page of consent/erasure events (in pos order) and move the checkpoint to
        ``upto``, where the log holds ``event`` (its id; None: no event there)."""
        with self._write():
            key = self.seal_key
            for ev in events:
                self._apply_one(ev, key, done)
            self._set_checkpoint(upto, event)

    def _apply_one(self, ev: Event, key: SealKey, done: KeyCatchUp) -> None:
        hub, seq, body = ev.hub, ev.seq, ev.body
        if isinstance(body, SubjectErased):
            self._on_erased(hub, seq, body.subject, key, done)
            return
        if not isinstance(body, (ConsentRecorded, ConsentWithdrawn)):
            return
        subject = body.subject
        if self._erased(hub, subject) is not None:
            return  # never hold a key again for an erased subject
        seen = self._db.execute(
            "SELECT event_seq FROM consent_seen WHERE owner = ? AND subject = ?", (hub, subject)
        ).fetchone()
        if seen is not None and seq <= seen[0]:
            return  # applied before this log was read again: the owner's later word stands
        self._db.execute(
            "INSERT OR REPLACE INTO consent_seen VALUES (?, ?, ?)", (hub, subject, seq)
        )
        if isinstance(body, ConsentWithdrawn):
            if hub != self.me and self._drop(hub, subject):
                done.dropped += 1
            return
        mine = [b for b in body.keys if b.hub == hub_display(self.me)]
        if not mine:
            if self._drop(hub, subject):
                done.dropped += 1
            return
        box = mine[0]
        self._db.execute(
            "INSERT OR IGNORE INTO boxed VALUES (?, ?, ?)", (hub, subject, bytes(box.key))
        )
        try:
            data_key = open_box(self.net, hub, subject, self.me, key, box)
        except PrivacyError as e:
            why = (
                "its consent was sealed to a seal key this hub has since destroyed; ask "
                f"{hub_display(hub)} to record the consent again"
                if box.key != key.public
                else str(e)
            )
            self._db.execute(
                "INSERT OR REPLACE INTO unreadable VALUES (?, ?, ?, ?)", (hub, subject, seq, why)
            )
            done.unreadable += 1
            return
        self._db.execute(
            "INSERT OR REPLACE INTO subject_keys VALUES (?, ?, ?, ?)",
            (hub, subject, data_key, _now_ms()),
        )
        done.opened += 1

    def _on_erased(
        self, owner: bytes, seq: int, subject: str, key: SealKey, done: KeyCatchUp
    ) -> None:
        if self._erased(owner, subject) is not None:
            return
        held = self._drop(owner, subject)
        boxed = {
            bytes(r[0])
            for r in self._db.execute(
                "SELECT seal_public FROM boxed WHERE owner = ? AND subject = ?", (owner, subject)
            )
        }
        involved = held or bool(boxed) or owner == self.me
        self._db.execute(
            "INSERT INTO erased VALUES (?, ?, ?, ?, ?, NULL)",
            (owner, subject, seq, _now_ms(), int(involved)),
        )
        self._db.execute("DELETE FROM boxed WHERE owner = ? AND subject = ?", (owner, subject))
        self._db.execute(
            "DELETE FROM consent_seen WHERE owner = ? AND subject = ?", (owner, subject)
        )
        if key.public in boxed:
            self._set_meta("rotate", 1)
        done.erased.append((owner, subject))

    @contextlib.asynccontextmanager
    async def appending(self) -> AsyncIterator[None]:
        """Hold the keyring's append lock: one task of one process at a time, across
        processes too (``flock`` on ``keys/keyring.lock``)."""
        async with self._append_lock:
            fd = os.open(self.path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                # Blocking flock in a thread: the holder's critical section is a few
                # appends, and the event loop keeps running meanwhile.
                await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # closing the descriptor releases the lock

    def checkpoint(self) -> int:
        """The log ``pos`` up to which the keyring has read."""
        return self._meta("pos")

    def checkpoint_event(self) -> bytes | None:
        """The id of the event at the checkpoint; None at 0, or in a keyring from before
        these were kept."""
        row = self._db.execute(
            "SELECT id FROM checkpoint_event WHERE pos = ?", (self.checkpoint(),)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def anchor(self, pos: int, event: bytes) -> None:
        """Record ``event`` as the one at the checkpoint, if that is still ``pos``."""
        with self._write():
            if self.checkpoint() == pos:
                self._set_checkpoint(pos, event)

    def start_over(self, pos: int) -> bool:
        """Move the checkpoint back to 0, if it is still ``pos``; whether it did."""
        with self._write():
            if self.checkpoint() != pos:
                return False  # moved meanwhile by another process: its own check stands
            self._set_checkpoint(0, None)
        return True

    def rotate_if_due(self) -> SealKey | None:
        """Rotate the seal key if an erasure asked for it; the new key, or None."""
        with self._write():
            if not self._meta("rotate"):
                return None
            new = self._rotate()
            self._set_meta("rotate", 0)
        return new

    def unconfirmed(self) -> list[tuple[bytes, str]]:
        """Erasures this hub took part in but has not yet confirmed in its log."""
        rows = self._db.execute(
            "SELECT owner, subject FROM erased WHERE held_key = 1 AND confirmed_seq IS NULL "
            "ORDER BY event_seq"
        ).fetchall()
        return [(bytes(o), s) for o, s in rows]

    def confirmed(self, owner: bytes, subject: str, seq: int) -> None:
        with self._write():
            self._db.execute(
                "UPDATE erased SET confirmed_seq = ? WHERE owner = ? AND subject = ?",
                (seq, owner, subject),
            )

    def erasures(self) -> list[dict[str, object]]:
        """Every erasure this hub applied: owner, subject, when, confirmed in which seq."""
        rows = self._db.execute(
            "SELECT owner, subject, destroyed_ms, held_key, confirmed_seq FROM erased "
            "ORDER BY destroyed_ms"
        ).fetchall()
        return [
            {
                "owner": hub_display(bytes(o)),
                "subject": s,
                "destroyed_ms": d,
                "held_key": bool(h),
                "confirmed_seq": c,
            }
            for o, s, d, h, c in rows
        ]


async def publish_seal_key(log: EventLog, keyring: Keyring) -> bool:
    """Publish this hub's current seal key if it has registered and its log does not name
    that key yet (after an upgrade, a rotation, or a registration without one)."""
    # Resumed where the last call stopped: read from the start every time (each round of
    # the node's projection loop), it cost O(this hub's log) and grew without bound.
    own = await read_profile(log, keyring.me, keyring._own_profile)
    current = keyring.seal_key.public
    if not own.registered or own.latest == current:
        return False
    await log.append("hub.profile_updated", HubProfileUpdated(seal_key=current))
    return True


async def check_log(log: EventLog, keyring: Keyring) -> bool:
    """Whether the keyring had to start reading ``log`` over from pos 0: the event it read
    at its checkpoint is not there (a log put back from a backup, lost and fetched again,
    another hub's copy; see the module's docstring). Logs one warning when it does.

    A keyring from before checkpoints were anchored trusts its checkpoint if the log has an
    event there, and anchors it; one beyond the log's end is still caught.
    """
    pos, anchor = keyring.checkpoint(), keyring.checkpoint_event()
    if pos == 0:
        return False  # nothing read yet
    stored = await log.stored_at(pos)
    if anchor is None and stored is not None:
        keyring.anchor(pos, stored[0])
        return False
    if anchor is not None and same_event(stored, anchor):
        return False
    if not keyring.start_over(pos):
        return False
    read = "" if anchor is None else f", event {anchor.hex()[:12]}"
    now = (
        f"the log ends at pos {await log.last_pos()}"
        if stored is None
        else f"the log has event {stored[0].hex()[:12]} there"
    )
    logger.warning(
        "keyring %s: the log %s is not the one it read (it had read up to pos %d%s; %s): a backup "
        "put back, or the log fetched again from peers? Reading the log again from the start "
        "for consents and erasures it may have missed; what it applied already is kept",
        keyring.path,
        log.path,
        pos,
        read,
        now,
    )
    return True


async def catch_up_keys(log: EventLog, keyring: Keyring) -> KeyCatchUp:
    """Apply every consent and erasure event not yet seen, rotate, publish and confirm.

    ``log`` must be opened with the signing key when erasures may need confirming.
    """
    done = KeyCatchUp()
    await check_log(log, keyring)
    upto = await log.last_pos()
    after = stored = keyring.checkpoint()
    while after < upto:
        page = [
            ev for ev in await log.events(after_pos=after, kind=KINDS, limit=PAGE) if ev.pos <= upto
        ]
        last = page[-1].pos if page else upto
        # Moving the checkpoint alone is an fsync'd write on the event loop, once a round
        # (5 ms each, measured): do it every 10 pages of events read; rereading that
        # many positions (none of these kinds) costs far less.
        if page or last - stored >= 10 * PAGE:
            there = page[-1].id if page else await _id_at(log, last)
            keyring.apply(page, last, there, done)
            stored = last
        after = last
    if keyring.rotate_if_due() is not None:
        done.rotated = True
    if log.hub is None:  # opened without the signing key: cannot publish or confirm
        return done
    # A node and a command (or two commands) may catch up at once: whoever holds the lock
    # checks and appends, so a seal key or a confirmation is never published twice.
    async with keyring.appending():
        await publish_seal_key(log, keyring)
        pending = keyring.unconfirmed()
        # A keyring put back from a copy applies again the erasures it had confirmed after
        # that copy was made: their confirmations are in the log already.
        logged = await _confirmations(log, keyring.me) if pending else {}
        for owner, subject in pending:
            seq = logged.get((hub_display(owner), subject))
            if seq is None:
                body = SubjectErasureConfirmed(owner=hub_display(owner), subject=subject)
                seq = (await log.append("subject.erasure_confirmed", body)).seq
                done.confirmed += 1
            keyring.confirmed(owner, subject, seq)
    return done


async def _confirmations(log: EventLog, me: bytes) -> dict[tuple[str, str], int]:
    """This hub's erasure confirmations in ``log``: (owner shown, subject) → seq."""
    found: dict[tuple[str, str], int] = {}
    after = 0
    kind = "subject.erasure_confirmed"
    while page := await log.events(after_pos=after, hub=me, kind=kind, limit=PAGE):
        for ev in page:
            if isinstance(ev.body, SubjectErasureConfirmed):
                found[ev.body.owner, ev.body.subject] = ev.seq
        after = page[-1].pos
    return found


async def _id_at(log: EventLog, pos: int) -> bytes | None:
    stored = await log.stored_at(pos)
    return None if stored is None else stored[0]


__all__ = [
    "KEYRING_FILE",
    "KeyCatchUp",
    "Keyring",
    "SealKeyBook",
    "catch_up_keys",
    "check_log",
    "publish_seal_key",
    "published_seal_key",
    "seal_keys",
]
