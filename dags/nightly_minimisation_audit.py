"""The nightly minimisation audit: an Airflow DAG (nightly at 23:30 UTC, and on demand).

See vendorprivacy.orchestration.audit_dag for the tasks and vendorprivacy.audit for the checks and the report.
"""
from vendorprivacy.orchestration.audit_dag import build_audit_dag

nightly_minimisation_audit = build_audit_dag()
