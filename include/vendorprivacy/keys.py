"""Secrets the pipelines need, and the pseudonymous keys derived from them.

Secrets come from the environment or an Airflow connection (never from the repository):
`token_key` makes per-vendor HMAC tokens (one vendor's tokens cannot be linked to another's);
`subject_key` makes the ledger's subject keys (who received whom, without raw identifiers).
"""
from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass

import pyarrow as pa


class MissingSecret(RuntimeError):
    pass


@dataclass(frozen=True)
class Keys:
    token_key: bytes
    subject_key: bytes

    @classmethod
    def from_env(cls) -> "Keys":
        missing = [n for n in ("VENDORPRIVACY_TOKEN_KEY", "VENDORPRIVACY_SUBJECT_KEY") if not os.environ.get(n)]
        if missing:
            raise MissingSecret(f"secret(s) not set: {', '.join(missing)} (or the Airflow connection 'vendorprivacy_keys')")
        return cls(os.environ["VENDORPRIVACY_TOKEN_KEY"].encode(), os.environ["VENDORPRIVACY_SUBJECT_KEY"].encode())

    def vendor_token_key(self, vendor: str) -> bytes:
        return hmac.new(self.token_key, f"vendor-token:{vendor}".encode(), hashlib.sha256).digest()

    def subject_key_of(self, customer_id: int) -> str:
        return hmac.new(self.subject_key, f"customer:{customer_id}".encode(), hashlib.sha256).hexdigest()

    def subject_key_sql(self, id_expr: str, param: str = "sk") -> tuple[str, dict]:
        """DuckDB SQL for subject_key_of(<id_expr>), with its parameters: HMAC-SHA-256 from two sha256() calls
        over the RFC 2104 padded key (DuckDB has no HMAC). Lets the shop scan compute keys in DuckDB's own
        threads, next to the Python work on the previous batch."""
        from .minimise.normalise import hmac_pads

        inner, outer = hmac_pads(self.subject_key)
        message = f"'customer:' || CAST(CAST({id_expr} AS BIGINT) AS VARCHAR)"
        return (f"sha256(${param}_o || unhex(sha256(${param}_i || encode({message}))))",
                {f"{param}_i": inner, f"{param}_o": outer})

    def subject_keys(self, customer_ids: pa.Array) -> pa.Array:
        """subject_key_of for an array of ids (null stays null), vectorised: the messages are built with Arrow
        kernels and hashed with the padded key states prepared once (normalise.hmac_array)."""
        import pyarrow.compute as pc

        from .minimise.normalise import hmac_array

        if isinstance(customer_ids, pa.ChunkedArray):
            customer_ids = customer_ids.combine_chunks()
        ids = customer_ids if pa.types.is_integer(customer_ids.type) else pc.cast(customer_ids, pa.int64())
        messages = pc.binary_join_element_wise("customer:", pc.cast(ids, pa.string()), "")
        return hmac_array(self.subject_key, messages)
