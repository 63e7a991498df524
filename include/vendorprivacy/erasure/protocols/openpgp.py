"""Detached OpenPGP signatures on vendor answers (acks, result manifests).

A file vendor signs the exact bytes of its answer with its OpenPGP key (the same key we encrypt to:
its primary key signs, its subkey decrypts) and publishes the ASCII-armoured detached signature next
to the answer as ``<answer>.asc``. We verify against the vendor's public key from the register's key
folder, in a throwaway keyring that holds that one key only, and require exactly one good signature
made by that key's fingerprint (primary or subkey).

``sign_detached`` is the vendor's side; the sandbox vendors and the tests use it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import gnupg

__all__ = ["SignatureInvalid", "sign_detached", "verify_detached", "key_fingerprints"]


class SignatureInvalid(Exception):
    """The detached signature does not prove the data came from the expected key (message is PII-free)."""


@contextmanager
def _gpg(agent: bool = False) -> Iterator[gnupg.GPG]:
    home = tempfile.mkdtemp(prefix="vp-sig-")
    os.chmod(home, 0o700)
    try:
        yield gnupg.GPG(gnupghome=home)
    finally:
        if agent or any(n.startswith("S.") for n in os.listdir(home)):
            subprocess.run(["gpgconf", "--homedir", home, "--kill", "all"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=False)
        shutil.rmtree(home, ignore_errors=True)


def _import(gpg: gnupg.GPG, key_file: Path, *, secret: bool) -> list[str]:
    try:
        data = Path(key_file).read_bytes()
    except OSError as exc:
        raise SignatureInvalid(f"key file {key_file} unreadable ({exc.strerror or type(exc).__name__})") from None
    result = gpg.import_keys(data)
    if not [fp for fp in (result.fingerprints or []) if fp]:
        raise SignatureInvalid(f"no OpenPGP key in {key_file}")
    keys = gpg.list_keys(secret=secret)
    if len(keys) != 1:
        raise SignatureInvalid(f"{key_file} must hold exactly one OpenPGP key")
    key = keys[0]
    if not secret and gpg.list_keys(secret=True):
        raise SignatureInvalid(f"{key_file} holds a secret key; expected a public key")
    return [key["fingerprint"], *[s[2] for s in key.get("subkeys", []) if len(s) > 2 and s[2]]]


def key_fingerprints(key_file: Path | str) -> list[str]:
    """Primary and subkey fingerprints of the single public key in ``key_file``."""
    with _gpg() as gpg:
        return _import(gpg, Path(key_file), secret=False)


def sign_detached(data: bytes, secret_key: Path | str) -> bytes:
    """ASCII-armoured detached signature of ``data`` with the (unprotected) key in ``secret_key``."""
    with _gpg(agent=True) as gpg:
        fingerprint = _import(gpg, Path(secret_key), secret=True)[0]
        sig = gpg.sign(data, keyid=fingerprint, detach=True, binary=False,
                       extra_args=["--pinentry-mode", "loopback", "--passphrase", ""])
        if not sig or not str(sig).strip():
            raise SignatureInvalid(f"gpg could not sign with {secret_key}: {sig.status or 'unknown error'}")
        return str(sig).encode()


def verify_detached(data: bytes, signature: bytes, public_key: Path | str) -> str:
    """Check ``signature`` over ``data`` against the single key in ``public_key``; return the signer fingerprint.

    Raises ``SignatureInvalid`` when the signature is bad, made by another key, expired/revoked, not a
    signature at all, or contains more than one signature.
    """
    armoured = b"-----BEGIN PGP SIGNATURE-----" in (signature or b"")
    binary = (signature or b"")[:1] in (b"\x88", b"\x89", b"\xc2")  # old/new-format signature packet tags
    if not (armoured or binary):
        raise SignatureInvalid("not an OpenPGP signature")
    with _gpg() as gpg:
        allowed = {fp.upper() for fp in _import(gpg, Path(public_key), secret=False)}
        with tempfile.TemporaryDirectory(prefix="vp-sigv-") as tmp:
            sig_path = Path(tmp) / "answer.sig"
            sig_path.write_bytes(signature)
            verified = gpg.verify_data(str(sig_path), data)
        sigs = getattr(verified, "sig_info", None) or {}
        if len(sigs) > 1:
            raise SignatureInvalid("more than one signature; expected exactly one")
        if not verified.valid:
            status = verified.status or "no valid signature"
            if verified.key_id and status == "no public key":
                status = f"signed by unknown key {verified.key_id}"
            raise SignatureInvalid(status)
        if verified.key_status:  # e.g. "signing key has expired" / "signing key was revoked"
            raise SignatureInvalid(f"signing key status: {verified.key_status}")
        signer = (verified.fingerprint or "").upper()
        primary = (verified.pubkey_fingerprint or "").upper()
        if signer not in allowed and primary not in allowed:
            raise SignatureInvalid(f"signed by {signer or 'an unknown key'}, not by the vendor's key")
        return primary or signer
