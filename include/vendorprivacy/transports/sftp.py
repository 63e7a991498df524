"""SFTP delivery through the Airflow SFTP provider's ``SFTPHook``.

The hook owns the connection details (host, port, login, ``key_file``, pinned ``host_key``,
``no_host_key_check: false``, ``compress: false``); this module adds what ``SFTPHook.store_file``
does not do: write-once semantics, an atomic rename after a size check, a manifest that marks the
delivery complete, and errors that say which vendor failed and why.

Delivery protocol for ``put(local, "x.csv.pgp", manifest)`` into ``<base>``::

    <base>/.x.csv.pgp.part              upload (pipelined), stat: size must match, then
    <base>/x.csv.pgp                    posix-rename (atomic, the vendor never sees a partial file)
    <base>/.x.csv.pgp.manifest.json.part
    <base>/x.csv.pgp.manifest.json      same; its presence marks the delivery complete

Re-running the same delivery is a no-op (``already_present=True``) when the vendor's manifest
describes the same plaintext (``plaintext_sha256``) or, failing that, the same ciphertext
(``sha256``) or, when the manifests carry neither, the same size. A different file under the same
name is a ``DeliveryConflict``. A data file without a manifest is an incomplete earlier attempt
(the vendor ignores it): it is kept if it is byte-identical, otherwise atomically replaced.
"""

from __future__ import annotations

import hashlib
import io
import posixpath
import socket
import stat as stat_mod
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, Any

import paramiko

from vendorprivacy.crypto import sha256_file
from vendorprivacy.transports.base import Receipt, check_manifest_matches, manifest_fields
from vendorprivacy.transports.errors import (
    AuthenticationFailed,
    DeliveryConflict,
    HostKeyMismatch,
    TransportError,
    VendorUnreachable,
)

MANIFEST_SUFFIX = ".manifest.json"
_BLOCK = 1024 * 1024

# Exceptions that mean "the network or the server went away", worth another attempt.
_NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    paramiko.ssh_exception.NoValidConnectionsError,
    socket.timeout,
    ConnectionError,
    EOFError,
)


def _validate_name(name: str) -> str:
    if not name or "/" in name or "\\" in name or name.startswith(".") or "\x00" in name:
        raise ValueError(f"invalid remote file name {name!r}: plain, non-hidden file names only")
    return name


def _key_fp(key: paramiko.PKey | None) -> str:
    if key is None:
        return "none"
    try:
        return f"{key.get_name()} {key.fingerprint}"
    except Exception:  # pragma: no cover - defensive; fingerprints are for messages only
        return key.get_name()


class SftpTransport:
    """Deliver files to one vendor folder over SFTP.

    :param conn_id: Airflow connection id (conn_type ``sftp``/``ssh``) with a pinned ``host_key``.
    :param base_path: vendor folder, relative to the SFTP start directory or absolute.
    :param connect_attempts: attempts to open the connection on network errors (never on host-key
        or authentication failures, which are not transient).
    :param retry_wait: seconds before the 2nd attempt, doubled after each further failure.
    :param sleep: injectable for tests.
    :param conn_timeout: TCP connect timeout in seconds (default: the connection's, else 10).
    """

    def __init__(
        self,
        conn_id: str,
        base_path: str,
        *,
        connect_attempts: int = 3,
        retry_wait: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
        conn_timeout: int | None = None,
    ) -> None:
        self.conn_id = conn_id
        self.base_path = base_path.rstrip("/") or "."
        self.connect_attempts = max(1, connect_attempts)
        self.retry_wait = retry_wait
        self.sleep = sleep
        self._conn_timeout = conn_timeout
        self._hook: Any = None
        self._client: paramiko.SFTPClient | None = None
        self._stack: ExitStack | None = None
        self._depth = 0

    # ------------------------------------------------------------------ connection
    @property
    def target(self) -> str:
        hook = self._hook
        if hook is None:
            return f"sftp:{self.base_path}"
        return f"sftp://{hook.username}@{hook.remote_host}:{hook.port}/{self.base_path}"

    def _error(self, cls: type[TransportError], message: str) -> TransportError:
        return cls(message, conn_id=self.conn_id, target=self.target)

    def _make_hook(self) -> Any:
        from airflow.providers.sftp.hooks.sftp import SFTPHook

        try:
            hook = SFTPHook(
                ssh_conn_id=self.conn_id,
                conn_retry_attempts=1,  # we retry ourselves, and never on a bad host key
                conn_timeout=self._conn_timeout,
            )
        except Exception as exc:  # connection missing or malformed
            raise TransportError(
                f"cannot build SFTP hook: {type(exc).__name__}: {exc}", conn_id=self.conn_id,
                target=f"sftp:{self.base_path}",
            ) from None
        if hook.conn_timeout is None:
            hook.conn_timeout = 10
        self._hook = hook
        if hook.no_host_key_check or hook.allow_host_key_change:
            raise self._error(
                TransportError,
                "refusing to send personal data to an unverified host: the connection disables host key "
                "checking (set host_key and no_host_key_check: false)",
            )
        if hook.host_key is None:
            raise self._error(TransportError, "the connection does not pin the vendor's host_key")
        return hook

    def _open(self) -> paramiko.SFTPClient:
        """Enter the hook's managed connection (host-key check happens here), with bounded retries."""
        hook = self._hook or self._make_hook()
        wait = self.retry_wait
        last: BaseException | None = None
        for attempt in range(1, self.connect_attempts + 1):
            stack = ExitStack()
            try:
                client = stack.enter_context(hook.get_managed_conn())
                self._stack = stack
                return client
            except paramiko.BadHostKeyException as exc:
                raise self._error(
                    HostKeyMismatch,
                    f"server host key does not match the pinned key: got {_key_fp(exc.key)}, "
                    f"expected {_key_fp(exc.expected_key)}; nothing was sent",
                ) from None
            except paramiko.AuthenticationException as exc:
                raise self._error(AuthenticationFailed, f"SSH authentication failed: {exc}") from None
            except paramiko.SSHException as exc:
                text = str(exc)
                if "known_hosts" in text or "host key" in text.lower():
                    raise self._error(
                        HostKeyMismatch,
                        f"server offered no host key matching the pinned {_key_fp(hook.host_key)}: {text}",
                    ) from None
                last = exc  # banner/protocol errors: server half-up or overloaded
            except OSError as exc:  # refused, reset, timeout, no route
                last = exc
            except EOFError as exc:
                last = exc
            if attempt < self.connect_attempts:
                self.sleep(wait)
                wait *= 2
        raise self._error(
            VendorUnreachable,
            f"could not connect after {self.connect_attempts} attempt(s): {type(last).__name__}: {last}",
        )

    @contextmanager
    def session(self) -> Iterator[paramiko.SFTPClient]:
        """Open (or reuse) one SFTP session; nest freely. Maps network errors to VendorUnreachable."""
        if self._client is None:
            self._client = self._open()
        self._depth += 1
        try:
            yield self._client
        except TransportError:
            raise
        except _NETWORK_ERRORS as exc:
            raise self._error(VendorUnreachable, f"connection lost: {type(exc).__name__}: {exc}") from None
        except paramiko.SSHException as exc:
            raise self._error(VendorUnreachable, f"SSH session failed: {exc}") from None
        except OSError as exc:  # SFTP status errors: permission denied, no such file, failure
            raise self._error(TransportError, f"SFTP operation failed: {exc.strerror or exc}") from None
        finally:
            self._depth -= 1
            if self._depth == 0:
                self.close()

    def close(self) -> None:
        """Close the session opened by ``session()`` (if any)."""
        stack, self._stack = self._stack, None
        self._client = None
        if stack is not None:
            stack.close()

    # ------------------------------------------------------------------ helpers
    def _path(self, name: str) -> str:
        return posixpath.join(self.base_path, _validate_name(name))

    @staticmethod
    def _stat(sftp: paramiko.SFTPClient, path: str) -> paramiko.SFTPAttributes | None:
        try:
            return sftp.stat(path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if getattr(exc, "errno", None) == 2:
                return None
            raise

    def _makedirs(self, sftp: paramiko.SFTPClient, path: str) -> None:
        if path in (".", "/", ""):
            return
        current = "/" if path.startswith("/") else ""
        for part in [p for p in path.split("/") if p and p != "."]:
            current = posixpath.join(current, part) if current else part
            st = self._stat(sftp, current)
            if st is None:
                try:
                    sftp.mkdir(current, 0o755)
                except OSError:
                    st = self._stat(sftp, current)  # created concurrently?
                    if st is None or not stat_mod.S_ISDIR(st.st_mode or 0):
                        raise self._error(TransportError, f"cannot create remote directory {current}") from None
            elif not stat_mod.S_ISDIR(st.st_mode or 0):
                raise self._error(TransportError, f"remote path {current} exists and is not a directory")

    def _atomic_write(self, sftp: paramiko.SFTPClient, path: str, src: IO[bytes], size: int) -> None:
        directory, name = posixpath.split(path)
        tmp = posixpath.join(directory, f".{name}.part")
        try:
            with sftp.open(tmp, "wb") as remote:
                remote.set_pipelined(True)
                while block := src.read(_BLOCK):
                    remote.write(block)
            written = sftp.stat(tmp).st_size
            if written != size:
                raise self._error(
                    TransportError, f"upload of {name} incomplete: {written} of {size} bytes; not published"
                )
            sftp.posix_rename(tmp, path)
        except TransportError:
            self._quiet_remove(sftp, tmp)
            raise
        except PermissionError:
            self._quiet_remove(sftp, tmp)
            raise self._error(TransportError, f"permission denied writing {path}") from None

    @staticmethod
    def _quiet_remove(sftp: paramiko.SFTPClient, path: str) -> None:
        try:
            sftp.remove(path)
        except Exception:  # noqa: BLE001 - best effort cleanup
            pass

    @staticmethod
    def _remote_sha256(sftp: paramiko.SFTPClient, path: str) -> str:
        h = hashlib.sha256()
        with sftp.open(path, "rb") as fh:
            fh.prefetch()
            while block := fh.read(_BLOCK):
                h.update(block)
        return h.hexdigest()

    def _read(self, sftp: paramiko.SFTPClient, path: str) -> bytes:
        with sftp.open(path, "rb") as fh:
            fh.prefetch()
            return fh.read()

    # ------------------------------------------------------------------ API
    def put(self, local_path: Path | str, remote_name: str, manifest_bytes: bytes) -> Receipt:
        """Deliver ``local_path`` as ``<base>/<remote_name>`` plus its manifest; idempotent, atomic."""
        local = Path(local_path)
        final = self._path(remote_name)
        manifest_path = final + MANIFEST_SUFFIX
        size = local.stat().st_size
        sha = sha256_file(local)
        ours = manifest_fields(manifest_bytes)
        check_manifest_matches(ours, size, sha)

        with self.session() as sftp:
            self._makedirs(sftp, self.base_path)
            existing = self._stat(sftp, final)
            if existing is not None:
                if not stat_mod.S_ISREG(existing.st_mode or 0):
                    raise self._error(DeliveryConflict, f"{final} exists and is not a regular file")
                remote_manifest = self._stat(sftp, manifest_path)
                if remote_manifest is not None:
                    theirs = manifest_fields(self._read(sftp, manifest_path))
                    self._check_same_delivery(final, ours, theirs, size, sha, existing.st_size or 0)
                    return Receipt(
                        remote_path=final,
                        bytes=int(existing.st_size or 0),
                        sha256=str(theirs.get("sha256") or sha),
                        already_present=True,
                    )
                # Data without manifest: an earlier attempt died before completing the delivery.
                same = existing.st_size == size and self._remote_sha256(sftp, final) == sha
                if not same:
                    with open(local, "rb") as fh:
                        self._atomic_write(sftp, final, fh, size)
                self._atomic_write(sftp, manifest_path, io.BytesIO(manifest_bytes), len(manifest_bytes))
                return Receipt(remote_path=final, bytes=size, sha256=sha, already_present=False)

            with open(local, "rb") as fh:
                self._atomic_write(sftp, final, fh, size)
            self._atomic_write(sftp, manifest_path, io.BytesIO(manifest_bytes), len(manifest_bytes))
        return Receipt(remote_path=final, bytes=size, sha256=sha, already_present=False)

    def _check_same_delivery(
        self, final: str, ours: dict, theirs: dict, size: int, sha: str, remote_size: int
    ) -> None:
        for key in ("plaintext_sha256", "sha256"):
            if ours.get(key) and theirs.get(key):
                if str(ours[key]).lower() != str(theirs[key]).lower():
                    raise self._error(
                        DeliveryConflict, f"{final} already holds a different delivery ({key} differs)"
                    )
                return
        if theirs.get("sha256"):
            if str(theirs["sha256"]).lower() != sha:
                raise self._error(DeliveryConflict, f"{final} already holds a different file (sha256 differs)")
            return
        if remote_size != size:
            raise self._error(
                DeliveryConflict, f"{final} already holds a different file ({remote_size} != {size} bytes)"
            )

    def get(self, remote_name: str) -> bytes:
        """Contents of ``<base>/<remote_name>`` (small files: acknowledgements, manifests)."""
        path = self._path(remote_name)
        with self.session() as sftp:
            if self._stat(sftp, path) is None:
                raise self._error(TransportError, f"{path} does not exist")
            return self._read(sftp, path)

    def list(self, prefix: str = "") -> list[str]:
        """Non-hidden file names in the vendor folder starting with ``prefix`` (sorted)."""
        with self.session() as sftp:
            try:
                names = sftp.listdir(self.base_path)
            except FileNotFoundError:
                return []
            except OSError as exc:
                if getattr(exc, "errno", None) == 2:
                    return []
                raise
        return sorted(n for n in names if not n.startswith(".") and n.startswith(prefix))

    def exists(self, name: str) -> bool:
        with self.session() as sftp:
            return self._stat(sftp, self._path(name)) is not None

    def delete(self, name: str) -> bool:
        """Remove ``<base>/<name>``; False if it was not there."""
        path = self._path(name)
        with self.session() as sftp:
            if self._stat(sftp, path) is None:
                return False
            sftp.remove(path)
            return True
