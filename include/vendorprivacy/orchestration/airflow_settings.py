"""Read the Astro-format airflow_settings.yaml: connections as AIRFLOW_CONN_* values, pools, variables.

Astro's CLI loads this file into the metadata database; the demo, tests and `make up` use these
helpers to give a plain Airflow the same settings (environment variables take precedence over the
metadata database, which is how the sandbox points vendor connections at its loopback servers).
"""
from __future__ import annotations

import json
from pathlib import Path

import yaml

FIELDS = {"conn_type": "conn_type", "conn_host": "host", "conn_schema": "schema", "conn_login": "login",
          "conn_password": "password", "conn_port": "port", "conn_extra": "extra"}


def load(path: Path) -> dict:
    return (yaml.safe_load(Path(path).read_text()) or {}).get("airflow", {})


def connection_env(path: Path, base_dir: Path | None = None) -> dict[str, str]:
    """{AIRFLOW_CONN_<ID>: json}; relative sqlite paths are made absolute against base_dir."""
    out = {}
    for c in load(path).get("connections", []):
        conn = {FIELDS[k]: v for k, v in c.items() if k in FIELDS and v not in (None, "")}
        if conn.get("conn_type") == "sqlite" and base_dir and not str(conn.get("host", "")).startswith("/"):
            conn["host"] = str((base_dir / conn["host"]).resolve())
        out[f"AIRFLOW_CONN_{c['conn_id'].upper()}"] = json.dumps(conn)
    return out


def pools(path: Path) -> list[dict]:
    return load(path).get("pools", [])


def variables(path: Path) -> dict[str, str]:
    return {v["variable_name"]: v["variable_value"] for v in load(path).get("variables", [])}
