"""The public API is chosen on purpose (STYLE 7): this test pins it so a change shows."""

from __future__ import annotations

import importlib
import types

import hubnode

PUBLIC = [
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


def test_public_names_are_pinned():
    assert sorted(hubnode.__all__) == sorted(PUBLIC)
    assert len(hubnode.__all__) == len(set(hubnode.__all__))


def test_every_public_name_is_importable():
    module = importlib.import_module("hubnode")
    for name in hubnode.__all__:
        assert getattr(module, name) is not None, name
    namespace: dict[str, object] = {}
    exec("from hubnode import *", namespace)
    assert set(hubnode.__all__) <= set(namespace)


def test_no_other_public_names_leak():
    # Every name without a leading underscore is either in __all__ or a submodule.
    leaked = {
        name
        for name, value in vars(hubnode).items()
        if not name.startswith("_")
        and name not in hubnode.__all__
        and not isinstance(value, types.ModuleType)
    }
    assert leaked == set()


def test_errors_form_one_tree():
    errors = [getattr(hubnode, n) for n in PUBLIC if n.endswith(("Error", "Hub", "Detected"))]
    errors.append(hubnode.InvalidEvent)
    assert all(issubclass(e, hubnode.HubnodeError) for e in errors)
    assert issubclass(hubnode.UnknownHub, hubnode.InvalidEvent)


def test_version_is_a_string():
    assert isinstance(hubnode.__version__, str)
