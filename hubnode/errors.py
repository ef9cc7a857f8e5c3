"""The one exception tree of hubnode (DESIGN §9).

Every error a caller may want to handle is a :class:`HubnodeError`; messages name the
thing, the value and, where there is one, the fix.
"""

from __future__ import annotations

from enum import StrEnum


class HubnodeError(Exception):
    """Root of every error hubnode raises on purpose."""


class Reason(StrEnum):
    """Why a record was rejected. Stable strings: they appear in counters, logs and JSON."""

    TOO_LARGE = "too_large"
    MALFORMED_RECORD = "malformed_record"
    MALFORMED_ENVELOPE = "malformed_envelope"
    NON_CANONICAL = "non_canonical"
    UNSUPPORTED_VERSION = "unsupported_version"
    WRONG_NETWORK = "wrong_network"
    WEAK_KEY = "weak_key"
    """``hub`` is a small-order point or a non-canonical encoding: no one's key."""
    UNKNOWN_HUB = "unknown_hub"
    KEY_NOT_IN_FORCE = "key_not_in_force"
    BAD_SIGNATURE = "bad_signature"
    BAD_SEQ = "bad_seq"
    PREV_MISMATCH = "prev_mismatch"
    HUB_FORKED = "hub_forked"
    UNKNOWN_KIND = "unknown_kind"
    BAD_BODY = "bad_body"
    BODY_VERSION = "body_version"
    BODY_TOO_LARGE = "body_too_large"
    """Over its kind's body limit, or carrying more unknown fields than a body may."""


class InvalidEvent(HubnodeError):
    """A record failed verification; ``reason`` says which check, the message says how."""

    def __init__(
        self, reason: Reason, message: str, *, hub: bytes | None = None, seq: int | None = None
    ) -> None:
        super().__init__(f"{reason.value}: {message}")
        self.reason = reason
        self.detail = message
        self.hub = hub
        """The claimed author, once the envelope decoded (unverified if the signature failed)."""
        self.seq = seq


class UnknownHub(InvalidEvent):
    """A record from a hub this node does not trust (DESIGN §5)."""

    def __init__(self, message: str) -> None:
        super().__init__(Reason.UNKNOWN_HUB, message)


class ForkDetected(HubnodeError):
    """Two validly signed, different events claim the same (hub, seq)."""

    def __init__(self, hub: bytes, seq: int, message: str) -> None:
        super().__init__(message)
        self.hub = hub
        self.seq = seq


class StorageError(HubnodeError):
    """The local log could not be read or written (disk, lock, corrupt database)."""


class DamagedDatabase(StorageError):
    """A SQLite file (the log, the views) is corrupt; the message says what to do."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path


class BehindPeers(HubnodeError):
    """Peers hold later events of this hub than its own log: appending now would fork it.

    Happens after restoring an old backup. The node catches up its own events from
    peers; appends work again once the log holds what peers announced.
    """

    def __init__(self, held: int, announced: int, message: str) -> None:
        super().__init__(message)
        self.held = held
        self.announced = announced


class ConfigError(HubnodeError):
    """A data folder, key file or config file is missing, unreadable or invalid."""


class TransportError(HubnodeError):
    """The network transport (NATS) failed."""


class IllegalTransition(HubnodeError):
    """A referral status change the transition table does not allow (or lacks a reason)."""

    def __init__(self, current: str, to: str, party: str, message: str) -> None:
        super().__init__(message)
        self.current = current
        self.to = to
        self.party = party


class ConsentRefused(HubnodeError):
    """A referral or disclosure to a hub the person's current consent does not cover."""


class PrivacyError(HubnodeError):
    """Personal data cannot be sealed or opened here (no key, erased, tampered)."""
