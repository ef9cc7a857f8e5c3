"""Staff accounts and console sessions, kept in ``DIR/staff.sqlite3`` (mode 0600).

Nothing here ever reaches the event log or another hub. An account has a random
**pseudonym** (``st-`` and 16 base32 characters: 80 random bits, never derived from the
person) — the only thing about a staff member that events carry (their ``staff`` field) —
and a **name**, the login name, which stays in this file. Passwords are hashed with
scrypt (stdlib :func:`hashlib.scrypt`, a memory-hard KDF), its parameters stored with each
hash so they can be raised later without breaking older accounts; hashes are compared in
constant time. A name is looked up, and its failed sign-ins counted, by one key,
:func:`staff_key`, so that no way of writing it reaches the account past the limit.

A **session** is a random token in the browser's cookie; only its SHA-256 is stored, so
a copy of this file does not let anyone sign in. Each session expires after a spell of
idleness and, whatever happens, some hours after sign-in; disabling an account ends its
sessions at once.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import re
import secrets
import sqlite3
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from hubnode.console.permissions import ROLES, Role
from hubnode.errors import HubnodeError
from hubnode.events.pathway import STAFF_PATTERN

STAFF_FILE: Final = "staff.sqlite3"
MIN_PASSWORD: Final = 10
MAX_PASSWORD: Final = 1024
MAX_NAME: Final = 120


@dataclass(frozen=True)
class ScryptCost:
    """scrypt's work factors. The default (n = 2**15, r = 8: 32 MiB, tens of ms) is the
    usual interactive-login setting; tests pass a cheaper one."""

    n: int = 2**15
    r: int = 8
    p: int = 1


DEFAULT_COST: Final = ScryptCost()
_SALT: Final = 16
_DKLEN: Final = 32
_STAFF_RE: Final = re.compile(STAFF_PATTERN)

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS staff (
    pseudonym   TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    folded      TEXT NOT NULL UNIQUE,           -- staff_key(name): one login per name
    role        TEXT NOT NULL,
    password    TEXT NOT NULL,                  -- scrypt$n$r$p$salt$hash (base64)
    disabled    INTEGER NOT NULL DEFAULT 0,
    created_ms  INTEGER NOT NULL,
    last_login_ms INTEGER
);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash  BLOB PRIMARY KEY,               -- SHA-256 of the cookie's token
    pseudonym   TEXT NOT NULL REFERENCES staff (pseudonym),
    csrf        TEXT NOT NULL,
    created_ms  INTEGER NOT NULL,
    seen_ms     INTEGER NOT NULL,
    flash       TEXT
);
"""

_KEY_VERSION: Final = 1
"""``PRAGMA user_version`` once every ``folded`` is :func:`staff_key` of its name (0: the
whitespace-collapsed ``casefold`` the console used before)."""


class StaffError(HubnodeError, ValueError):
    """A staff account cannot be added or changed as asked (the message says why)."""


@dataclass(frozen=True)
class Account:
    pseudonym: str
    name: str
    role: Role
    disabled: bool
    created_ms: int
    last_login_ms: int | None


@dataclass(frozen=True)
class Session:
    """A signed-in staff member's session, as the console sees it on each request."""

    account: Account
    csrf: str
    """The token every form of this session carries and every POST is checked against."""
    created_ms: int
    seen_ms: int
    flash: str | None
    """A one-off message for the next page (what the last action did)."""


def staff_key(name: str) -> str:
    """The one form of a staff name that accounts are stored, looked up and rate-limited
    by: compatibility forms (fullwidth letters, ligatures, no-break and em spaces) made
    plain (NFKC), case folded, invisible format characters dropped, every run of
    whitespace one space. Two names a person would read as the same are one key."""
    plain = unicodedata.normalize("NFKC", name)
    folded = unicodedata.normalize("NFKC", plain.casefold())  # folding can un-normalise
    visible = "".join(c for c in folded if unicodedata.category(c) != "Cf")
    return " ".join(visible.split())


def new_pseudonym() -> str:
    """``st-`` and 16 base32 characters (80 random bits)."""
    return "st-" + base64.b32encode(secrets.token_bytes(10)).decode("ascii").lower()


def hash_password(password: str, cost: ScryptCost = DEFAULT_COST) -> str:
    salt = secrets.token_bytes(_SALT)
    digest = _scrypt(password, salt, cost)
    b64 = base64.b64encode
    return f"scrypt${cost.n}${cost.r}${cost.p}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (constant-time compare of the digests)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        cost = ScryptCost(int(n), int(r), int(p))
        expected = base64.b64decode(digest, validate=True)
        actual = _scrypt(password, base64.b64decode(salt, validate=True), cost)
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


def _scrypt(password: str, salt: bytes, cost: ScryptCost) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=cost.n,
        r=cost.r,
        p=cost.p,
        maxmem=256 * cost.n * cost.r,  # twice what it needs: hashlib's default is 32 MiB
        dklen=_DKLEN,
    )


def _cost_of(stored: str) -> ScryptCost:
    try:
        _, n, r, p, _, _ = stored.split("$")
        return ScryptCost(int(n), int(r), int(p))
    except ValueError:
        return DEFAULT_COST


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise StaffError(f"the password is too short: use at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise StaffError(f"the password is too long: use at most {MAX_PASSWORD} characters")


def _token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("ascii", "replace")).digest()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class StaffStore:
    """The staff accounts and sessions of one hub. Use as a context manager."""

    def __init__(self, path: Path, db: sqlite3.Connection, clock: Callable[[], int]) -> None:
        self.path = path
        self._db = db
        self._clock = clock
        self._dummy: str | None = None

    @classmethod
    def open(cls, folder: Path, *, clock: Callable[[], int] = _now_ms) -> StaffStore:
        """Open (creating, mode 0600) ``folder/staff.sqlite3``; ``clock`` gives ms."""
        path = folder / STAFF_FILE
        if not path.exists():
            # Created 0600 before SQLite writes a password hash into it.
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        try:
            db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA foreign_keys = ON")
            db.executescript(_SCHEMA)
            _refold(db)
        except sqlite3.Error as e:
            raise StaffError(f"cannot open the staff accounts {path}: {e}") from e
        return cls(path, db, clock)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- accounts -----------------------------------------------------------------------

    def add(self, name: str, role: str, password: str, cost: ScryptCost = DEFAULT_COST) -> Account:
        """A new account; StaffError if the name is taken or a value is not acceptable."""
        shown = " ".join(name.split())
        if not staff_key(shown) or len(shown) > MAX_NAME:
            raise StaffError(f"give a name of 1 to {MAX_NAME} characters")
        if role not in ROLES:
            raise StaffError(f"role {role!r}: use one of {', '.join(ROLES)}")
        check_password(password)
        pseudonym = new_pseudonym()
        assert _STAFF_RE.match(pseudonym), pseudonym
        try:
            self._db.execute(
                "INSERT INTO staff (pseudonym, name, folded, role, password, created_ms) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (pseudonym, shown, staff_key(shown), role, hash_password(password, cost),
                 self._clock()),
            )  # fmt: skip
        except sqlite3.IntegrityError:
            raise StaffError(f"there is already a staff account named {shown!r}") from None
        account = self.by_pseudonym(pseudonym)
        assert account is not None
        return account

    def _account(self, row: tuple[str, str, str, int, int, int | None]) -> Account:
        pseudonym, name, role, disabled, created, last = row
        return Account(pseudonym, name, _role(role), bool(disabled), created, last)

    _COLUMNS: Final = "pseudonym, name, role, disabled, created_ms, last_login_ms"

    def accounts(self) -> list[Account]:
        rows = self._db.execute(f"SELECT {self._COLUMNS} FROM staff ORDER BY folded").fetchall()
        return [self._account(r) for r in rows]

    def by_name(self, name: str) -> Account | None:
        row = self._db.execute(
            f"SELECT {self._COLUMNS} FROM staff WHERE folded = ?", (staff_key(name),)
        ).fetchone()
        return None if row is None else self._account(row)

    def by_pseudonym(self, pseudonym: str) -> Account | None:
        row = self._db.execute(
            f"SELECT {self._COLUMNS} FROM staff WHERE pseudonym = ?", (pseudonym,)
        ).fetchone()
        return None if row is None else self._account(row)

    def disable(self, name: str) -> Account:
        """Disable the account and end its sessions at once."""
        account = self.by_name(name)
        if account is None:
            raise StaffError(f"there is no staff account named {name!r}; see `hubnode staff list`")
        self._db.execute("BEGIN IMMEDIATE")
        self._db.execute("UPDATE staff SET disabled = 1 WHERE pseudonym = ?", (account.pseudonym,))
        self._db.execute("DELETE FROM sessions WHERE pseudonym = ?", (account.pseudonym,))
        self._db.execute("COMMIT")
        return self.by_pseudonym(account.pseudonym) or account

    async def authenticate(self, name: str, password: str) -> Account | None:
        """The active account ``name`` if ``password`` is its password, else None.

        Costs one scrypt whatever the outcome — an unknown name is checked against a
        dummy hash — so timing does not tell which names exist. The KDF runs in a worker
        thread: a sign-in must not hold up other requests.
        """
        row = self._db.execute(
            "SELECT pseudonym, password, disabled FROM staff WHERE folded = ?", (staff_key(name),)
        ).fetchone()
        stored = row[1] if row is not None else await self._dummy_hash()
        right = await asyncio.to_thread(verify_password, password, stored)
        if row is None or not right or row[2]:
            return None
        self._db.execute(
            "UPDATE staff SET last_login_ms = ? WHERE pseudonym = ?", (self._clock(), row[0])
        )
        return self.by_pseudonym(row[0])

    async def _dummy_hash(self) -> str:
        """A hash to check unknown names against, made with the newest account's scrypt
        parameters so that it costs what a real one does."""
        row = self._db.execute(
            "SELECT password FROM staff ORDER BY created_ms DESC, rowid DESC LIMIT 1"
        ).fetchone()
        cost = _cost_of(row[0]) if row is not None else DEFAULT_COST
        if self._dummy is None or _cost_of(self._dummy) != cost:
            self._dummy = await asyncio.to_thread(hash_password, secrets.token_urlsafe(16), cost)
        return self._dummy

    # -- sessions -----------------------------------------------------------------------

    def start_session(self, account: Account) -> str:
        """A new session for ``account``; returns the token for the cookie (kept nowhere)."""
        token = secrets.token_urlsafe(32)
        now = self._clock()
        self._db.execute(
            "INSERT INTO sessions VALUES (?, ?, ?, ?, ?, NULL)",
            (_token_hash(token), account.pseudonym, secrets.token_urlsafe(32), now, now),
        )
        return token

    def session(self, token: str, *, idle_ms: int, absolute_ms: int) -> Session | None:
        """The live session ``token`` names, marked as seen now; None (and the session
        ended) if it is unknown, idle too long, too old, or its account is disabled."""
        key = _token_hash(token)
        row = self._db.execute(
            "SELECT pseudonym, csrf, created_ms, seen_ms, flash FROM sessions WHERE token_hash = ?",
            (key,),
        ).fetchone()
        if row is None:
            return None
        pseudonym, csrf, created, seen, flash = row
        now = self._clock()
        account = self.by_pseudonym(pseudonym)
        expired = now - seen > idle_ms or now - created > absolute_ms
        if account is None or account.disabled or expired:
            self._db.execute("DELETE FROM sessions WHERE token_hash = ?", (key,))
            return None
        self._db.execute(
            "UPDATE sessions SET seen_ms = ?, flash = NULL WHERE token_hash = ?", (now, key)
        )
        return Session(account, csrf, created, now, flash)

    def flash(self, token: str, message: str) -> None:
        """Keep ``message`` for the session's next page (shown once)."""
        self._db.execute(
            "UPDATE sessions SET flash = ? WHERE token_hash = ?", (message, _token_hash(token))
        )

    def end_session(self, token: str) -> None:
        self._db.execute("DELETE FROM sessions WHERE token_hash = ?", (_token_hash(token),))

    def sweep(self, *, idle_ms: int, absolute_ms: int) -> int:
        """Delete expired sessions; how many."""
        now = self._clock()
        cur = self._db.execute(
            "DELETE FROM sessions WHERE seen_ms < ? OR created_ms < ?",
            (now - idle_ms, now - absolute_ms),
        )
        return cur.rowcount


def _refold(db: sqlite3.Connection) -> None:
    """Bring a staff file written before :func:`staff_key` to it, once.

    Oldest account first. An account whose new key another one holds already (one whose
    name folded that way before, or an older one just re-folded) keeps its old key and is
    disabled: merging the two, or letting one answer to the other's name, would be worse.
    The admin adds that person again under another name.
    """
    if db.execute("PRAGMA user_version").fetchone()[0] >= _KEY_VERSION:
        return
    db.execute("BEGIN IMMEDIATE")  # another process may be opening the file too
    try:
        if db.execute("PRAGMA user_version").fetchone()[0] < _KEY_VERSION:
            rows = db.execute(
                "SELECT pseudonym, name, folded FROM staff ORDER BY created_ms, rowid"
            ).fetchall()
            for pseudonym, name, folded in rows:
                key = staff_key(name)
                if key == folded:
                    continue
                try:
                    db.execute("UPDATE staff SET folded = ? WHERE pseudonym = ?", (key, pseudonym))
                except sqlite3.IntegrityError:  # the UNIQUE key: another account has it
                    db.execute("UPDATE staff SET disabled = 1 WHERE pseudonym = ?", (pseudonym,))
            db.execute(f"PRAGMA user_version = {_KEY_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _role(text: str) -> Role:
    for role in ROLES:
        if role == text:
            return role
    raise StaffError(f"unknown role {text!r} in the staff accounts")
