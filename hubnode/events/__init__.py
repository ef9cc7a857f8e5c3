"""Envelope, canonical encoding, signing and kinds: bytes in, decisions out, no I/O.

Importing this package registers every built-in kind in :data:`~hubnode.events.kinds.KINDS`:
a log must know a kind to accept events of it.
"""

from importlib import import_module
from importlib.util import find_spec

from hubnode.events import network as network

# The shared-work kinds, one module per area (each registers its kinds on import).
AREAS = ("directory", "skills", "tenders", "feedback")
for _area in AREAS:
    if find_spec(f"hubnode.events.{_area}") is not None:
        import_module(f"hubnode.events.{_area}")
