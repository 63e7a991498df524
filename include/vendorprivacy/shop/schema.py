"""Table definitions of the synthetic shop database (SQLAlchemy Core).

The tables carry no schema name: ``generate_shop`` maps them into a PostgreSQL
schema with ``schema_translate_map`` so the same ``MetaData`` serves SQLite and
any number of isolated PostgreSQL schemas.

Timestamps are naive and mean UTC. Money is ``NUMERIC(10,2)`` in the order's
currency. No column ever holds a full card number: payments keep a processor
token, the brand and the last four digits only.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Table,
    Text,
)

metadata = MetaData()


def _customer_fk() -> Column:
    return Column(
        "customer_id",
        Integer,
        ForeignKey("customers.customer_id"),
        nullable=False,
        index=True,
    )


customers = Table(
    "customers",
    metadata,
    Column("customer_id", Integer, primary_key=True, autoincrement=False),
    Column("first_name", String(100), nullable=False),
    Column("last_name", String(100), nullable=False),
    # Stored as typed by the customer: may be mixed case, padded or +tagged.
    Column("email", String(320), nullable=False),
    # Stored as typed, in a national or international format.
    Column("phone", String(40), nullable=False),
    # ISO-3166 alpha-2 region to pass to phonenumbers.parse() with `phone`.
    Column("phone_country", String(2), nullable=False),
    Column("birth_date", Date, nullable=False),
    Column("street", String(200), nullable=False),
    Column("city", String(100), nullable=False),
    Column("region", String(100), nullable=False),
    Column("postcode", String(20), nullable=False),
    Column("country", String(2), nullable=False),
    Column("is_eea", Boolean, nullable=False),
    Column("created_at", DateTime, nullable=False),
)

consents = Table(
    "consents",
    metadata,
    Column(
        "customer_id",
        Integer,
        ForeignKey("customers.customer_id"),
        primary_key=True,
        autoincrement=False,
    ),
    Column("marketing_opt_in", Boolean, nullable=False),
    Column("sale_share_opt_out", Boolean, nullable=False),
    Column("gpc_signal", Boolean, nullable=False),
    # Only meaningful for EEA residents; always False for everybody else.
    Column("eea_ad_consent", Boolean, nullable=False),
    Column("updated_at", DateTime, nullable=False),
)

products = Table(
    "products",
    metadata,
    Column("sku", String(16), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("category", String(40), nullable=False),
    # List price in USD; orders convert it into their own currency.
    Column("price", Numeric(10, 2), nullable=False),
)

orders = Table(
    "orders",
    metadata,
    Column("order_id", Integer, primary_key=True, autoincrement=False),
    _customer_fk(),
    Column("ordered_at", DateTime, nullable=False),
    Column("total_amount", Numeric(10, 2), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(20), nullable=False),
)

order_items = Table(
    "order_items",
    metadata,
    Column(
        "order_id",
        Integer,
        ForeignKey("orders.order_id"),
        primary_key=True,
        autoincrement=False,
    ),
    Column("sku", String(16), ForeignKey("products.sku"), primary_key=True),
    Column("quantity", SmallInteger, nullable=False),
    Column("unit_price", Numeric(10, 2), nullable=False),
)

payments = Table(
    "payments",
    metadata,
    Column("payment_id", Integer, primary_key=True, autoincrement=False),
    Column(
        "order_id", Integer, ForeignKey("orders.order_id"), nullable=False, index=True
    ),
    Column("processor_token", String(40), nullable=False),
    Column("card_brand", String(20), nullable=False),
    Column("card_last4", String(4), nullable=False),
    Column("amount", Numeric(10, 2), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("paid_at", DateTime, nullable=False),
)

shipments = Table(
    "shipments",
    metadata,
    Column("shipment_id", Integer, primary_key=True, autoincrement=False),
    Column(
        "order_id", Integer, ForeignKey("orders.order_id"), nullable=False, index=True
    ),
    Column("carrier", String(40), nullable=False),
    # Usually the customer; sometimes a gift recipient (a third party).
    Column("ship_name", String(200), nullable=False),
    Column("ship_street", String(200), nullable=False),
    Column("ship_city", String(100), nullable=False),
    Column("ship_region", String(100), nullable=False),
    Column("ship_postcode", String(20), nullable=False),
    Column("ship_country", String(2), nullable=False),
    Column("ship_phone", String(40), nullable=False),
    Column("tracking_number", String(40), nullable=False),
    Column("shipped_at", DateTime, nullable=False),
)

reviews = Table(
    "reviews",
    metadata,
    Column("review_id", Integer, primary_key=True, autoincrement=False),
    _customer_fk(),
    Column("sku", String(16), ForeignKey("products.sku"), nullable=False),
    Column("rating", SmallInteger, nullable=False),
    Column("title", String(200), nullable=False),
    # Free text: may start with = + - @ TAB CR, or contain an e-mail or phone.
    Column("body", Text, nullable=False),
    Column("has_photo", Boolean, nullable=False),
    Column("photo_url", String(300), nullable=True),
    Column("created_at", DateTime, nullable=False),
)

devices = Table(
    "devices",
    metadata,
    Column("device_id", String(36), primary_key=True),
    _customer_fk(),
    Column("cookie_id", String(64), nullable=False),
    Column("user_agent", String(400), nullable=False),
    Column("ip_address", String(45), nullable=False),
    Column("first_seen", DateTime, nullable=False),
    Column("last_seen", DateTime, nullable=False),
)

wishlist = Table(
    "wishlist",
    metadata,
    Column(
        "customer_id",
        Integer,
        ForeignKey("customers.customer_id"),
        primary_key=True,
        autoincrement=False,
    ),
    Column("sku", String(16), ForeignKey("products.sku"), primary_key=True),
    Column("added_at", DateTime, nullable=False),
)

appointments = Table(
    "appointments",
    metadata,
    Column("appointment_id", Integer, primary_key=True, autoincrement=False),
    _customer_fk(),
    Column("showroom", String(100), nullable=False),
    # May lie in the future relative to as_of (booked ahead).
    Column("scheduled_at", DateTime, nullable=False),
    # As typed in the booking form: may differ in case from customers.*.
    Column("full_name", String(200), nullable=False),
    Column("email", String(320), nullable=False),
)

support_calls = Table(
    "support_calls",
    metadata,
    Column("call_id", Integer, primary_key=True, autoincrement=False),
    _customer_fk(),
    # Caller id as captured by the telephony system (E.164 where it fits).
    Column("phone", String(40), nullable=False),
    Column("started_at", DateTime, nullable=False),
    Column("duration_s", Integer, nullable=False),
    Column("recording_ref", String(200), nullable=False),
    Column("agent_id", String(20), nullable=False),
)

#: All shop tables by name, parents before children (safe insert order).
SHOP_TABLES: dict[str, Table] = {t.name: t for t in metadata.sorted_tables}

__all__ = ["SHOP_TABLES", "metadata"]
