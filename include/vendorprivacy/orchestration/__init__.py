"""The Airflow layer: DAGs built from the register, and settings read from Airflow connections.

Only airflow.sdk and the policy models are imported at module level, so parsing DAG files stays fast;
the domain core (pyarrow, GX, gpg, transports) is imported inside tasks.
"""
