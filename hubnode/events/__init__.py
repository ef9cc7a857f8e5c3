"""Envelope, canonical encoding, signing and kinds: bytes in, decisions out, no I/O."""

from hubnode.events import network as network  # registers the network kinds on import
