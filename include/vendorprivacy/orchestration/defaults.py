"""The task defaults every DAG of this project shares: an owner, retries with exponential backoff, a timeout."""
from __future__ import annotations

import datetime as dt


def default_args(owner: str, *, retries: int, retry_delay: dt.timedelta, max_retry_delay: dt.timedelta,
                 execution_timeout: dt.timedelta, **extra) -> dict:
    return {"owner": owner, "retries": retries, "retry_delay": retry_delay, "retry_exponential_backoff": True,
            "max_retry_delay": max_retry_delay, "execution_timeout": execution_timeout, **extra}
