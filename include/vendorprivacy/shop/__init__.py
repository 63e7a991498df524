"""Deterministic synthetic shop database (customers, orders, reviews, ...)
with planted privacy hard cases, for testing the vendor-sharing pipelines."""

from .generate import (
    CUSTOMER_KINDS,
    EEA_COUNTRIES,
    FLAG_KINDS,
    REVIEW_KINDS,
    Planted,
    describe_shop,
    generate_shop,
)
from .schema import SHOP_TABLES, metadata

__all__ = [
    "CUSTOMER_KINDS",
    "EEA_COUNTRIES",
    "FLAG_KINDS",
    "REVIEW_KINDS",
    "SHOP_TABLES",
    "Planted",
    "describe_shop",
    "generate_shop",
    "metadata",
]
