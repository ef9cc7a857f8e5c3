"""People's personal data: sealed to consented hubs, erasable everywhere (DESIGN §8).

:mod:`hubnode.privacy.seal` says what is encrypted under which key and context;
:mod:`hubnode.privacy.keyring` keeps this hub's seal keys and the data keys it holds, and
destroys them on erasure; :mod:`hubnode.privacy.published` reads the seal keys other hubs
published. docs/privacy.md describes the construction with test vectors.
"""
