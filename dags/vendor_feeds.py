"""Vendor shares: one Airflow DAG per feed in the register (include/policy/vendors/*.yaml).

A new vendor or feed is a register entry and a key, not code. See vendorprivacy.orchestration.feed_dags.
"""
from vendorprivacy.orchestration.feed_dags import build_feed_dags

globals().update(build_feed_dags())
