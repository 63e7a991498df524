"""Where the pipelines find their databases, staging area and secrets: Airflow connections first,
then environment variables, then the local demo defaults."""
from __future__ import annotations

import os
from pathlib import Path

DEFAULT_STATE = Path(os.environ.get("VENDORPRIVACY_STATE_DIR", Path.cwd() / ".state"))


def _connection(conn_id: str):
    from airflow.sdk import BaseHook
    try:
        return BaseHook.get_connection(conn_id)
    except Exception:  # not defined: fall back to the environment / defaults
        return None


def sqlalchemy_url(conn) -> str:
    """A SQLAlchemy URL from an Airflow connection of type sqlite or postgres."""
    if conn.conn_type == "sqlite":
        return f"sqlite:///{conn.host}"
    if conn.conn_type in ("postgres", "postgresql"):
        auth = conn.login or ""
        if conn.password:
            auth += f":{conn.password}"
        return f"postgresql+psycopg2://{auth}{'@' if auth else ''}{conn.host}:{conn.port or 5432}/{conn.schema or 'postgres'}"
    raise ValueError(f"connection '{conn.conn_id}': unsupported type '{conn.conn_type}' (sqlite or postgres)")


def _db_url(conn_id: str, env: str, default_file: str) -> str:
    conn = _connection(conn_id)
    if conn is not None:
        return sqlalchemy_url(conn)
    return os.environ.get(env) or f"sqlite:///{DEFAULT_STATE / default_file}"


def shop_url() -> str:
    return _db_url("shop_db", "VENDORPRIVACY_SHOP_URL", "shop.db")


def ledger_url() -> str:
    return _db_url("ledger_db", "VENDORPRIVACY_LEDGER_URL", "ledger.db")


def _setting(env: str, variable: str) -> str | None:
    """An environment variable, else an Airflow Variable (None outside a task or without a metadata database)."""
    if os.environ.get(env):
        return os.environ[env]
    try:
        from airflow.sdk import Variable
        return Variable.get(variable, default=None)
    except Exception:  # outside a task, or no metadata database
        return None


def staging_root() -> Path:
    """Where staged files wait between prepare, gate and deliver on this machine (plaintext: private, 0700)."""
    configured = _setting("VENDORPRIVACY_STAGING_DIR", "vendorprivacy_staging_dir")
    return Path(configured) if configured else DEFAULT_STATE / "staging"


def shared_staging():
    """The store staged files are handed over through when stages may run on different workers
    (``s3://<conn_id>@<bucket>/<prefix>``), or None: the staging root is the hand-off (one machine)."""
    from vendorprivacy.staging import SharedStaging

    url = _setting("VENDORPRIVACY_STAGING_URL", "vendorprivacy_staging_url")
    return SharedStaging.from_url(url) if url else None


def keys():
    from vendorprivacy.keys import Keys, MissingSecret

    conn = _connection("vendorprivacy_keys")
    if conn is not None:
        extra = conn.extra_dejson
        missing = [k for k in ("token_key", "subject_key") if not extra.get(k)]
        if missing:
            raise MissingSecret(f"connection 'vendorprivacy_keys' lacks {', '.join(missing)} in its extra")
        return Keys(extra["token_key"].encode(), extra["subject_key"].encode())
    return Keys.from_env()


def ledger():
    from vendorprivacy.ledger import Ledger

    led = Ledger(ledger_url())
    led.migrate()
    return led
