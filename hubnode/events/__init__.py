"""Envelope, canonical encoding, signing and kinds: bytes in, decisions out, no I/O.

Importing this package registers every built-in kind in :data:`~hubnode.events.kinds.KINDS`:
a log must know a kind to accept events of it.
"""

# Each module registers its kinds on import.
from hubnode.events import directory as directory
from hubnode.events import feedback as feedback
from hubnode.events import network as network
from hubnode.events import pathway as pathway
from hubnode.events import skills as skills
from hubnode.events import tenders as tenders
