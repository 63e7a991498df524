"""Test-wide settings: an isolated Airflow home and fixed demo secrets (never real ones)."""
import os
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
(ROOT / ".state").mkdir(exist_ok=True)
_state = Path(tempfile.mkdtemp(prefix="test-", dir=ROOT / ".state"))  # a fresh Airflow home per session
os.environ.setdefault("AIRFLOW_HOME", str(_state / "airflow"))
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(ROOT / "dags"))
os.environ.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(ROOT / "plugins"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{_state / 'airflow' / 'airflow.db'}")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
os.environ.setdefault("VENDORPRIVACY_TOKEN_KEY", "test-token-key")
os.environ.setdefault("VENDORPRIVACY_SUBJECT_KEY", "test-subject-key")

PG_TEST = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


@contextmanager
def pg_ledger(prefix: str) -> Iterator:
    """A migrated ledger in a fresh schema of this machine's `test` database, dropped afterwards."""
    import sqlalchemy as sa
    from vendorprivacy.ledger import Ledger

    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    ledger = Ledger(PG_TEST, schema=schema)
    ledger.migrate()
    try:
        yield ledger
    finally:
        ledger.engine.dispose()
        engine = sa.create_engine(PG_TEST)
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()
