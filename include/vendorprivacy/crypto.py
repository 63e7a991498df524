"""OpenPGP encryption to vendor keys, and checksums.

Every gpg call runs in a throwaway GNUPGHOME (a 0700 temp dir, removed afterwards, agent killed), so
nothing depends on, or leaks into, a keyring on the worker. Encryption uses ``--trust-model always``
(the key file in the repository *is* the trust decision) and ``-z 0``: the payload is about to be
encrypted, compression would cost ~10x throughput for almost no size gain on hashed columns.

Errors never carry file contents: only paths, fingerprints and gpg's status line.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import gnupg

__all__ = [
    "CryptoError",
    "KeyMissingError",
    "EncryptionError",
    "DecryptionError",
    "encrypt_file",
    "decrypt_file",
    "sha256_file",
    "generate_keypair",
    "key_fingerprint",
]

_BLOCK = 1024 * 1024
# python-gnupg copies stdin to gpg in buffer_size chunks; the 16 KiB default costs throughput.
_GPG_BUFFER = 1024 * 1024


class CryptoError(Exception):
    """Base class for crypto failures."""


class KeyMissingError(CryptoError):
    """The key file is missing, unreadable or holds no usable OpenPGP key."""


class EncryptionError(CryptoError):
    """gpg refused or failed to encrypt."""


class DecryptionError(CryptoError):
    """gpg refused or failed to decrypt (wrong key, tampered or truncated ciphertext)."""


def sha256_file(path: Path | str) -> str:
    """Hex SHA-256 of a file, streamed in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_BLOCK):
            h.update(block)
    return h.hexdigest()


def _has_sockets(home: str) -> bool:
    try:
        return any(name.startswith("S.") for name in os.listdir(home))
    except OSError:
        return False


@contextmanager
def _throwaway_gpg(*, agent: bool = False) -> Iterator[gnupg.GPG]:
    """A GPG bound to a fresh 0700 home. ``agent=True`` for secret-key work (kills the agent after)."""
    home = tempfile.mkdtemp(prefix="vp-gnupg-")
    os.chmod(home, 0o700)
    gpg_used_agent = [agent]
    try:
        gpg = gnupg.GPG(gnupghome=home)
        gpg.buffer_size = _GPG_BUFFER
        yield gpg
    finally:
        # Secret-key operations start a gpg-agent bound to this home; do not leave it running.
        # (The sockets may live under /run/user/<uid>/gnupg, so ask gpgconf rather than look;
        # importing a key file that turns out to hold a secret key also starts one.)
        if gpg_used_agent[0] or _has_sockets(home):
            subprocess.run(
                ["gpgconf", "--homedir", home, "--kill", "all"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=False,
            )
        shutil.rmtree(home, ignore_errors=True)


def _import_key(gpg: gnupg.GPG, key_path: Path, *, secret: bool) -> str:
    """Import one key file; return the primary fingerprint. Raise KeyMissingError if unusable."""
    key_path = Path(key_path)
    kind = "secret" if secret else "public"
    try:
        data = key_path.read_bytes()
    except FileNotFoundError:
        raise KeyMissingError(f"OpenPGP {kind} key file not found: {key_path}") from None
    except OSError as exc:
        raise KeyMissingError(f"OpenPGP {kind} key file unreadable: {key_path} ({exc.strerror})") from None
    result = gpg.import_keys(data)
    fingerprints = [fp for fp in (result.fingerprints or []) if fp]
    if not fingerprints:
        raise KeyMissingError(f"no usable OpenPGP {kind} key in {key_path}")
    keys = gpg.list_keys(secret=secret)
    if not keys:
        raise KeyMissingError(f"no usable OpenPGP {kind} key in {key_path}")
    if len({k["fingerprint"] for k in keys}) != 1:
        raise KeyMissingError(f"{key_path} holds more than one OpenPGP key; expected exactly one")
    key = keys[0]
    if not secret:
        if gpg.list_keys(secret=True):
            raise KeyMissingError(
                f"{key_path} holds a SECRET OpenPGP key; a vendor key file must hold only the public key"
            )
        # Capabilities: upper-case letters apply to the whole key (primary + subkeys). 'E' = can encrypt.
        caps = key.get("cap", "")
        if "E" not in caps and "e" not in caps:
            raise KeyMissingError(f"OpenPGP key in {key_path} has no encryption-capable (sub)key")
        if key.get("trust") in ("e", "r"):
            state = "expired" if key.get("trust") == "e" else "revoked"
            raise KeyMissingError(f"OpenPGP key in {key_path} is {state}")
    return key["fingerprint"]


def key_fingerprint(public_key: Path | str) -> str:
    """Primary fingerprint of the key in ``public_key`` (raises KeyMissingError if unusable)."""
    with _throwaway_gpg() as gpg:
        return _import_key(gpg, Path(public_key), secret=False)


def encrypt_file(src: Path | str, dst: Path | str, public_key: Path | str) -> str:
    """Encrypt ``src`` to the single key in ``public_key``, writing binary OpenPGP to ``dst``.

    Returns the recipient's primary fingerprint. ``dst`` is removed if encryption fails.
    """
    src, dst, public_key = Path(src), Path(dst), Path(public_key)
    with _throwaway_gpg() as gpg:
        fingerprint = _import_key(gpg, public_key, secret=False)  # also refuses secret-key files
        if not src.is_file():
            raise EncryptionError(f"plaintext file not found: {src}")
        with open(src, "rb") as fh:
            result = gpg.encrypt_file(
                fh,
                recipients=[fingerprint],
                always_trust=True,
                armor=False,
                output=str(dst),
                extra_args=["-z", "0"],
            )
        if not result.ok:
            dst.unlink(missing_ok=True)
            detail = f" ({result.status_detail})" if getattr(result, "status_detail", "") else ""
            raise EncryptionError(
                f"gpg could not encrypt {src.name} to key {fingerprint} from {public_key}: "
                f"status={result.status or 'unknown'}{detail}, returncode={result.returncode}"
            )
        return fingerprint


def decrypt_file(src: Path | str, dst: Path | str, secret_key: Path | str) -> None:
    """Decrypt ``src`` with the (unprotected) key in ``secret_key`` to ``dst``.

    Fails (and removes ``dst``) on a wrong key or on ciphertext whose integrity check (MDC/AEAD) fails.
    """
    src, dst, secret_key = Path(src), Path(dst), Path(secret_key)
    with _throwaway_gpg(agent=True) as gpg:
        _import_key(gpg, secret_key, secret=True)
        with open(src, "rb") as fh:
            result = gpg.decrypt_file(
                fh,
                always_trust=True,
                output=str(dst),
                extra_args=["--pinentry-mode", "loopback", "--passphrase", ""],
            )
        if not result.ok or result.returncode not in (0, None):
            dst.unlink(missing_ok=True)
            raise DecryptionError(
                f"gpg could not decrypt {src.name} with {secret_key}: "
                f"status={result.status or 'unknown'}, returncode={result.returncode}"
            )


def generate_keypair(name: str, email: str, dir: Path | str) -> tuple[Path, Path]:  # noqa: A002
    """Generate an ed25519 (sign) + cv25519 (encrypt) key without passphrase, for the sandbox.

    Writes ``<dir>/<stem>.asc`` (public) and ``<dir>/<stem>.sec.asc`` (secret), where stem is the
    part of ``email`` before '@'. Returns ``(public_path, secret_path)``.
    """
    out = Path(dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = email.split("@", 1)[0]
    with _throwaway_gpg(agent=True) as gpg:
        params = gpg.gen_key_input(
            key_type="EDDSA",
            key_curve="ed25519",
            key_usage="sign",
            subkey_type="ECDH",
            subkey_curve="cv25519",
            subkey_usage="encrypt",
            name_real=name,
            name_email=email,
            expire_date=0,
            no_protection=True,
        )
        key = gpg.gen_key(params)
        if not key.fingerprint:
            raise CryptoError(f"gpg could not generate a key for {email}: {key.status}")
        public = gpg.export_keys(key.fingerprint, armor=True)
        secret = gpg.export_keys(key.fingerprint, secret=True, armor=True, expect_passphrase=False)
    if not public or not secret:
        raise CryptoError(f"gpg could not export the key for {email}")
    public_path = out / f"{stem}.asc"
    secret_path = out / f"{stem}.sec.asc"
    public_path.write_text(public)
    secret_path.write_text(secret)
    os.chmod(secret_path, 0o600)
    return public_path, secret_path
