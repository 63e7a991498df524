"""Who may be shared, per the feed's rules, at the run date.

Erased and suppressed subjects are never eligible (the suppression list is applied by the caller);
unknown age or missing consent counts as 'no' (fail closed).
"""
from __future__ import annotations

from datetime import date

from ..policy.models import FeedSpec


def born_by(run_date: date, years: int) -> date:
    """The latest birth date of someone who is at least `years` old on run_date (29 Feb -> 28 Feb)."""
    try:
        return run_date.replace(year=run_date.year - years)
    except ValueError:
        return run_date.replace(year=run_date.year - years, day=28)


RULE_SQL = {
    "min_age_13": "c.birth_date IS NOT NULL AND c.birth_date <= :born_by_13",
    "min_age_16": "c.birth_date IS NOT NULL AND c.birth_date <= :born_by_16",
    "no_sale_share_opt_out": "k.sale_share_opt_out = :false",
    "no_gpc": "k.gpc_signal = :false",
    "eea_ad_consent": "(c.is_eea = :false OR k.eea_ad_consent = :true)",
    "marketing_opt_in": "k.marketing_opt_in = :true",
}


def eligible_ids_query(feed: FeedSpec, run_date: date) -> tuple[str, dict]:
    """SQL returning the customer_ids the feed may include. A missing consents row fails every consent rule."""
    where = " AND ".join(f"({RULE_SQL[r]})" for r in sorted(set(feed.eligibility))) or "1 = 1"
    sql = f"SELECT c.customer_id FROM customers c LEFT JOIN consents k ON k.customer_id = c.customer_id WHERE {where}"
    params = {"born_by_13": born_by(run_date, 13), "born_by_16": born_by(run_date, 16), "true": True, "false": False}
    return sql, {k: v for k, v in params.items() if f":{k}" in sql}


def eligible_among_query(feed: FeedSpec, run_date: date, dialect: str) -> tuple[str, dict, str] | None:
    """The eligibility query restricted to a list of candidate ids, for feeds that extract a few rows (one
    day's orders) out of many customers: (sql, params, name of the ids parameter), or None when the dialect
    has no list parameter (then use eligible_ids_query for every customer). SQLite takes the ids as one
    JSON text (it caps bound variables), PostgreSQL as an array."""
    sql, params = eligible_ids_query(feed, run_date)
    if dialect == "sqlite":
        return sql + " AND c.customer_id IN (SELECT value FROM json_each(:candidate_ids))", params, "candidate_ids"
    if dialect == "postgresql":
        return sql + " AND c.customer_id = ANY(:candidate_ids)", params, "candidate_ids"
    return None
