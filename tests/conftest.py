"""Test-wide settings: an isolated Airflow home and fixed demo secrets (never real ones)."""
import os
import tempfile
from pathlib import Path

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
