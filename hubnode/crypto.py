"""Keys, signatures and sealing: the only module that touches ``cryptography`` (DESIGN §1, §2, §8).

Node and auditor verify through the same function so they can never disagree on an
edge-case signature. Sealing (X25519 + HKDF-SHA256 + ChaCha20-Poly1305) is documented
with test vectors in docs/privacy.md; :mod:`hubnode.privacy` builds on these primitives.
"""

from __future__ import annotations

import logging
import os
import stat
from functools import lru_cache
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from hubnode.errors import ConfigError

PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64
DATA_KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
SEAL_INFO = b"hubnode seal v1"

log = logging.getLogger("hubnode.keys")


class SigningKey:
    """An Ed25519 private key. Never printed: ``repr`` shows only the public half."""

    __slots__ = ("_key", "public")

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.public: bytes = key.public_key().public_bytes_raw()

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> SigningKey:
        """Deterministic key from a 32-byte seed (RFC 8032); for test vectors."""
        if len(seed) != 32:
            raise ValueError(f"an Ed25519 seed is 32 bytes, got {len(seed)}")
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)

    def save(self, path: Path) -> None:
        """Write the key as unencrypted PKCS#8 PEM, mode 0600; refuse to overwrite."""
        pem = self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise ConfigError(f"key file {path} already exists; refusing to overwrite it") from None
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())

    @classmethod
    def load(cls, path: Path, *, strict: bool = False) -> SigningKey:
        """The key in ``path``. A file other users may read or write (mode ``& 0o077``) is
        logged as a warning, once per file and process, or refused with ``strict``."""
        try:
            with open(path, "rb") as f:
                # The mode of the file opened, not of whatever the path names a moment later.
                check_secret_mode(path, os.fstat(f.fileno()).st_mode, "key file", strict=strict)
                pem = f.read()
        except OSError as e:
            raise ConfigError(f"cannot read key file {path}: {e.strerror}") from e
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except ValueError as e:
            raise ConfigError(f"key file {path} is not a PEM private key: {e}") from e
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(f"key file {path} holds a {type(key).__name__}, not an Ed25519 key")
        return cls(key)

    def __repr__(self) -> str:
        return f"SigningKey(public={self.public.hex()})"


_warned: set[Path] = set()


def check_secret_mode(path: Path, mode: int, what: str, *, strict: bool) -> None:
    """Refuse (``strict``: ConfigError) or log a warning (once per file and process) if
    ``mode``, the mode of the secret file ``path``, lets other users read or write it."""
    if not mode & 0o077:
        return
    message = (
        f"{what} {path} is open to other users (mode {stat.S_IMODE(mode):04o}) but holds "
        f"this hub's secret keys; run `chmod 600 {path}`"
    )
    if strict:
        raise ConfigError(message + " (refused in strict mode: --strict or HUBNODE_STRICT=1)")
    if path not in _warned:
        _warned.add(path)
        log.warning("%s", message)


# -- which Ed25519 public keys no hub can have (docs/protocol.md, "Identity") ------------
#
# OpenSSL verifies under any 32 bytes that decode to a curve point. Under a point of small
# order it verifies forgeries: for the identity, R = identity and S = 0 signs every
# message. And it reduces y mod p, so one point has several encodings. A key generator
# never makes either (a clamped scalar times the base point has prime order and is
# encoded canonically), so refusing them costs honest hubs nothing.

_P: Final = 2**255 - 19
_D: Final = -121665 * pow(121666, -1, _P) % _P


def _small_order(y: int) -> int | None:
    """n in (1, 2, 4, 8) if n·A is the identity for the point A with this y, else None.

    Reads y alone, projectively (y = Y/Z): doubling maps y to (y² + x²)/(2 - y² + x²), and
    the curve equation gives x² = (y² - 1)/(d·y² + 1), so no square root is taken. The
    answer therefore also holds for a point of the quadratic twist with this y: callers
    check that the point is on the curve. y = 1 only for the identity (x² = 0).
    """
    big_y, z = y, 1
    for order in (1, 2, 4, 8):
        if z and big_y == z:
            return order
        yy, zz = big_y * big_y % _P, z * z % _P
        c, e = (_D * yy + zz) % _P, zz * (yy - zz) % _P
        big_y, z = (yy * c + e) % _P, ((2 * zz - yy) * c + e) % _P
    return None


def _on_curve(y: int) -> bool:
    """Whether some x puts (x, y) on edwards25519: x² = u/v is a square (Euler)."""
    u, v = (y * y - 1) % _P, (_D * y * y + 1) % _P  # v is never 0: -1/d is not a square
    return pow(u * v % _P, (_P - 1) // 2, _P) in (0, 1)


@lru_cache(maxsize=4096)  # keys are few, and every record's key is asked about
def weak_key_reason(public: bytes) -> str | None:
    """Why ``public`` can be no hub's id or signing key, or None if it may be one.

    Refused: a **non-canonical** encoding — y (the low 255 bits, little-endian) not below
    p = 2^255 - 19, or x = 0 with the sign bit set — and the 8 points of **small order**
    (8·A is the identity): 48 byte strings in all. Not refused: mixed-order points (a
    prime-order point plus a small-order one), for which signing still takes the
    prime-order part's private key, and 32 bytes that are no curve point, under which
    OpenSSL verifies nothing.
    """
    if len(public) != PUBLIC_KEY_SIZE:
        return f"it is {len(public)} bytes, not {PUBLIC_KEY_SIZE}"
    n = int.from_bytes(public, "little")
    y, sign = n & ((1 << 255) - 1), n >> 255
    if y >= _P:
        return "its y is not below p = 2^255 - 19 (a non-canonical encoding, which no key is)"
    if sign and y * y % _P == 1:  # x = 0 exactly when y = ±1
        return "it sets the sign bit of x = 0 (a non-canonical encoding, which no key is)"
    order = _small_order(y)
    if order is None or not _on_curve(y):
        return None
    if order == 1:
        return "it is the identity point, for which anyone can forge signatures"
    return f"it is a point of small order {order}, for which anyone can forge signatures"


@lru_cache(maxsize=4096)
def _public_key(raw: bytes) -> Ed25519PublicKey | None:
    if weak_key_reason(raw) is not None:
        return None
    try:
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        return None


def verify(public: bytes, signature: bytes, data: bytes) -> bool:
    """True only if ``signature`` is a valid Ed25519 signature of ``data`` by ``public``.

    A key :func:`weak_key_reason` refuses verifies nothing, whatever OpenSSL would say.

    ``cryptography`` releases the GIL while verifying, so callers may use threads to
    verify on several cores.
    """
    if len(public) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    key = _public_key(public)
    if key is None:
        return False
    try:
        key.verify(signature, data)
    except InvalidSignature:
        return False
    return True


class SealKey:
    """An X25519 private key that opens data keys sealed to this hub. Never printed."""

    __slots__ = ("_key", "public")

    def __init__(self, key: X25519PrivateKey) -> None:
        self._key = key
        self.public: bytes = key.public_key().public_bytes_raw()

    @classmethod
    def generate(cls) -> SealKey:
        return cls(X25519PrivateKey.generate())

    @classmethod
    def from_bytes(cls, raw: bytes) -> SealKey:
        if len(raw) != 32:
            raise ValueError(f"an X25519 private key is 32 bytes, got {len(raw)}")
        return cls(X25519PrivateKey.from_private_bytes(raw))

    def private_bytes(self) -> bytes:
        """The raw private key, for the local keystore only."""
        return self._key.private_bytes_raw()

    def shared(self, public: bytes) -> bytes:
        return self._key.exchange(X25519PublicKey.from_public_bytes(public))

    def __repr__(self) -> str:
        return f"SealKey(public={self.public.hex()})"


class OpenFailed(Exception):
    """A sealed value did not open: wrong key, wrong context or tampered bytes."""


def new_data_key() -> bytes:
    return os.urandom(DATA_KEY_SIZE)


def new_nonce() -> bytes:
    return os.urandom(NONCE_SIZE)


def encrypt(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """ChaCha20-Poly1305 ciphertext with its 16-byte tag appended."""
    return ChaCha20Poly1305(key).encrypt(nonce, plaintext, aad)


def decrypt(key: bytes, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
    """The plaintext of :func:`encrypt`; raises :class:`OpenFailed` on any mismatch."""
    try:
        return ChaCha20Poly1305(key).decrypt(nonce, ciphertext, aad)
    except (InvalidTag, ValueError) as e:
        raise OpenFailed(str(e) or "authentication failed") from None


def _kek(shared: bytes, ephemeral_public: bytes, recipient_public: bytes) -> bytes:
    if shared == bytes(32):  # a low-order recipient key: refuse, never seal to it
        raise OpenFailed("the recipient key is a low-order point")
    return HKDF(
        algorithm=hashes.SHA256(),
        length=DATA_KEY_SIZE,
        salt=ephemeral_public + recipient_public,
        info=SEAL_INFO,
    ).derive(shared)


def seal(
    recipient_public: bytes, data_key: bytes, aad: bytes, *, ephemeral: SealKey | None = None
) -> tuple[bytes, bytes]:
    """Seal ``data_key`` to one recipient: returns (ephemeral public key, box).

    The key-encryption key depends on the ephemeral key *and* the recipient key, so it is
    single-use — and the all-zero nonce safe — as long as one ephemeral key never seals
    twice to the same recipient key. Without ``ephemeral`` a fresh one is made; callers
    sealing one data key to several distinct recipients may share one (docs/privacy.md).
    """
    if len(recipient_public) != PUBLIC_KEY_SIZE:
        raise ValueError(f"an X25519 public key is 32 bytes, got {len(recipient_public)}")
    eph = ephemeral or SealKey.generate()
    kek = _kek(eph.shared(recipient_public), eph.public, recipient_public)
    return eph.public, ChaCha20Poly1305(kek).encrypt(bytes(NONCE_SIZE), data_key, aad)


def open_sealed(key: SealKey, ephemeral_public: bytes, box: bytes, aad: bytes) -> bytes:
    """The data key in ``box``; raises :class:`OpenFailed` if it was not sealed to ``key``
    under this ``aad`` or was altered."""
    try:
        shared = key.shared(ephemeral_public)
    except ValueError as e:
        raise OpenFailed(f"bad ephemeral key: {e}") from None
    kek = _kek(shared, ephemeral_public, key.public)
    return decrypt(kek, bytes(NONCE_SIZE), box, aad)
