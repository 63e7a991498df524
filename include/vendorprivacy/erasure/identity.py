"""The subject's identifiers at rest: sealed with AES-256-GCM under a key that comes from a secret.

The secret is the `identity_key` in the extra of the Airflow connection `vendorprivacy_keys`, or the
environment variable VENDORPRIVACY_IDENTITY_KEY: never the repository. Each ciphertext is bound to its
request (associated data), so a ciphertext moved to another row does not open. Lookups (to find a
duplicate of an open request) are HMACs under a key derived from the same secret: equal identifiers give
equal lookups, nothing can be read back from them.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

ENV = "VENDORPRIVACY_IDENTITY_KEY"
CONN_ID, EXTRA = "vendorprivacy_keys", "identity_key"
MIN_SECRET = 16
_VERSION = b"\x01"


class IdentityKeyError(RuntimeError):
    """The identity key is missing, too short, or not the one the identifiers were sealed with."""


def _derive(secret: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"vendorprivacy-identity", info=info).derive(secret)


class IdentityCipher:
    def __init__(self, secret: str | bytes):
        raw = secret.encode() if isinstance(secret, str) else bytes(secret)
        if len(raw.strip()) < MIN_SECRET:
            raise IdentityKeyError(f"the identity key must be a random secret of at least {MIN_SECRET} characters")
        self._aead = AESGCM(_derive(raw, b"seal v1"))
        self._lookup_key = _derive(raw, b"lookup v1")
        # Identifies the key (not secret): a row sealed under another key is reported as such, not as corrupt.
        self.key_id = hmac.new(_derive(raw, b"key id v1"), b"key-id", hashlib.sha256).hexdigest()[:16]

    def seal(self, value: dict | list, *, aad: str) -> str:
        nonce = os.urandom(12)
        data = json.dumps(value, separators=(",", ":"), sort_keys=True).encode()
        return base64.b64encode(_VERSION + nonce + self._aead.encrypt(nonce, data, aad.encode())).decode("ascii")

    def open(self, token: str, *, aad: str, key_id: str | None = None) -> dict | list:
        if key_id and key_id != self.key_id:
            raise IdentityKeyError(f"these identifiers were sealed with identity key {key_id}; the configured key is "
                                   f"{self.key_id} (wrong key, or the key was rotated without re-sealing)")
        blob = base64.b64decode(token)
        if blob[:1] != _VERSION:
            raise IdentityKeyError("unknown ciphertext version")
        try:
            data = self._aead.decrypt(blob[1:13], blob[13:], aad.encode())
        except InvalidTag:
            raise IdentityKeyError("the identifiers do not open with the configured identity key "
                                   "(wrong key, or the ciphertext belongs to another request)") from None
        return json.loads(data)

    def lookup(self, kind: str, normalised: str | None) -> str | None:
        if not normalised:
            return None
        return hmac.new(self._lookup_key, f"{kind}:{normalised}".encode(), hashlib.sha256).hexdigest()


def identity_secret() -> str:
    """The secret from the Airflow connection's extra, else the environment; a clear error when neither has it."""
    conn = None
    try:
        from vendorprivacy.orchestration.settings import _connection

        conn = _connection(CONN_ID)
    except Exception:  # Airflow not configured here: the environment decides
        conn = None
    if conn is not None:
        value = (conn.extra_dejson or {}).get(EXTRA)
        if value:
            return str(value)
    if os.environ.get(ENV):
        return os.environ[ENV]
    raise IdentityKeyError(f"no identity key: set '{EXTRA}' in the extra of the Airflow connection '{CONN_ID}' "
                           f"or the environment variable {ENV} (a random secret, never committed). Nothing was stored.")


def identity_cipher(secret: str | bytes | None = None) -> IdentityCipher:
    return IdentityCipher(secret if secret is not None else identity_secret())
