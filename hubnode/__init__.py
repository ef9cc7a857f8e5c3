"""hubnode: signed event logs, gossip and shared views for a peer-to-peer network of hubs.

The names below are the public API; everything else may change without notice.
"""

from hubnode.audit import Auditor, AuditReport, audit_file, audit_folder
from hubnode.config import Config, HubFolder
from hubnode.crypto import SigningKey
from hubnode.errors import (
    BehindPeers,
    ConfigError,
    ForkDetected,
    HubnodeError,
    InvalidEvent,
    Reason,
    StorageError,
    TransportError,
    UnknownHub,
)
from hubnode.events import network as _network  # registers the network kinds
from hubnode.events.envelope import MAX_RECORD_SIZE, Envelope, WireRecord
from hubnode.events.ids import hub_display, parse_hub
from hubnode.events.kinds import KINDS, Body, KindRegistry
from hubnode.events.verify import Event, Verified, verify_record
from hubnode.store.log import Appended, EventLog, ForkProof, Head, IngestOutcome, Status

__version__ = "0.1.0"

__all__ = [
    "KINDS",
    "MAX_RECORD_SIZE",
    "Appended",
    "AuditReport",
    "Auditor",
    "BehindPeers",
    "Body",
    "Config",
    "ConfigError",
    "Envelope",
    "Event",
    "EventLog",
    "ForkDetected",
    "ForkProof",
    "Head",
    "HubFolder",
    "HubnodeError",
    "IngestOutcome",
    "InvalidEvent",
    "KindRegistry",
    "Reason",
    "SigningKey",
    "Status",
    "StorageError",
    "TransportError",
    "UnknownHub",
    "Verified",
    "WireRecord",
    "audit_file",
    "audit_folder",
    "hub_display",
    "parse_hub",
    "verify_record",
]

del _network
