"""Every DAG file imports cleanly, fast, without heavy modules, and with the settings operations rely on."""
import subprocess
import sys
import warnings

import pytest

from tests.conftest import ROOT

DEPRECATED = ("airflow.decorators", "airflow.operators.", "airflow.models.param", "airflow.datasets",
              "days_ago", "SimpleHttpOperator", "airflow.models.dag import", "schedule_interval")
HEAVY = ("great_expectations", "pandas", "pyarrow", "duckdb", "gnupg", "paramiko", "boto3", "phonenumbers")


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bag = DagBag(dag_folder=str(ROOT / "dags"))
    bag.caught_warnings = [w for w in caught if "vendorprivacy" in str(w.filename) or "/dags/" in str(w.filename)]
    return bag


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert len(dagbag.dags) >= 8


def test_one_dag_per_register_feed(dagbag):
    from vendorprivacy.policy import load_register

    assert {f"share_{f.id}" for _, f in load_register().feeds()} <= set(dagbag.dags)


def test_no_deprecation_warnings_from_our_code(dagbag):
    assert [str(w.message) for w in dagbag.caught_warnings] == []


def test_no_deprecated_imports_in_source():
    files = list((ROOT / "dags").rglob("*.py")) + list((ROOT / "include" / "vendorprivacy" / "orchestration").rglob("*.py"))
    offenders = [f"{f.name}: {d}" for f in files for d in DEPRECATED if d in f.read_text()]
    assert offenders == []


@pytest.mark.parametrize("attr", ["owner", "retries", "tags", "pool", "execution_timeout"])
def test_operational_settings(dagbag, attr):
    for dag in dagbag.dags.values():
        assert dag.tags, dag.dag_id
        for t in dag.tasks:
            if attr == "owner":
                assert t.owner and t.owner != "airflow", (dag.dag_id, t.task_id)
            elif attr == "retries":
                assert t.retries >= 1 and t.retry_exponential_backoff, (dag.dag_id, t.task_id)
            elif attr == "pool" and dag.dag_id.startswith("share_"):
                assert t.pool.startswith("vendor_"), (dag.dag_id, t.task_id)
            elif attr == "execution_timeout":
                assert t.execution_timeout is not None, (dag.dag_id, t.task_id)


def test_feed_dags_carry_register_docs(dagbag):
    dag = dagbag.dags["share_adgrid_customer_match"]
    assert "email_sha256" in dag.doc_md and "interest_based_advertising_partners" in dag.doc_md
    assert [t.task_id for t in dag.topological_sort()] == ["prepare", "quality_gate", "deliver"]


def test_parsing_dags_imports_no_heavy_module():
    code = ("import sys; from airflow.dag_processing.dagbag import DagBag; "
            f"b = DagBag(dag_folder={str(ROOT / 'dags')!r}); assert not b.import_errors, b.import_errors; "
            f"print('HEAVY:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "HEAVY:"
