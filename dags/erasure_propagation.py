"""Erasure and opt-out propagation: an Airflow DAG, the privacy team's trigger form (schedule=None).

See vendorprivacy.orchestration.erasure_dag for the tasks and vendorprivacy.erasure for the domain code.
"""
from vendorprivacy.orchestration.erasure_dag import build_erasure_dag

erasure_propagation = build_erasure_dag()
