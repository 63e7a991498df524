"""Typed models of the notice and the vendor register.

Every model forbids unknown keys: a misspelt key in YAML is an error, not a silently ignored setting.
"""
from __future__ import annotations

import re
from typing import Annotated, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from . import taxonomy

Category = Annotated[str, AfterValidator(taxonomy.check_category)]
Use = Annotated[str, AfterValidator(taxonomy.check_use)]
Identifier = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- the notice
class RecipientCategory(Strict):
    title: str
    relationship: Literal["service_provider", "third_party"]
    # customer_records: fed from the shop database by this project; site_tag / user_initiated: data
    # reaches them in the browser or by the customer's own action, outside these pipelines.
    channel: Literal["customer_records", "site_tag", "user_initiated"]


class Collected(Strict):
    category: Category
    quote: str
    implied: bool = False


class Purpose(Strict):
    use: Use
    quote: str


class Section(Strict):
    id: Identifier
    title: str
    collects: list[Collected]
    uses: list[Purpose]
    recipients: list[Identifier]


class ChildrenRules(Strict):
    never_share_under: int
    sale_share_opt_in_under: int


class Notice(Strict):
    notice: str
    source: str
    recipient_categories: dict[Identifier, RecipientCategory]
    sections: list[Section]
    children: ChildrenRules

    @model_validator(mode="after")
    def _recipients_known(self) -> "Notice":
        for s in self.sections:
            for r in s.recipients:
                if r not in self.recipient_categories:
                    raise ValueError(f"section '{s.id}' names unknown recipient category '{r}'")
        return self

    def allowed_categories(self, recipient: str) -> set[str]:
        return {c.category for s in self.sections if recipient in s.recipients for c in s.collects}

    def allowed_uses(self, recipient: str) -> set[str]:
        return {u.use for s in self.sections if recipient in s.recipients for u in s.uses}


# ---------------------------------------------------------------- the register
# Named, tested identifier normalisers (vendorprivacy.minimise.normalise implements each).
Normaliser = Literal["email", "email_strip_plus_tag", "phone_e164", "phone_digits", "lower_trim"]
Transform = Literal["keep", "drop", "sha256", "hmac", "e164", "truncate", "text", "email"]
# Eligibility rules. Erased/suppressed subjects are excluded always; these are the feed's own rules.
Rule = Literal["min_age_13", "min_age_16", "no_sale_share_opt_out", "no_gpc", "eea_ad_consent", "marketing_opt_in"]
ADVERTISING_RULES: frozenset[str] = frozenset({"min_age_16", "no_sale_share_opt_out", "no_gpc", "eea_ad_consent"})
PHONE_NORMALISERS = {"phone_e164", "phone_digits"}


class FieldSpec(Strict):
    name: Identifier                      # column as the vendor receives it
    source: str | None = None             # column of the feed query (default: name)
    category: Category
    transform: Transform
    normaliser: Normaliser | None = None  # sha256 / hmac: how the value is normalised before hashing
    length: int | None = Field(default=None, gt=0)  # truncate, text: at most this many characters
    plus: bool = True                     # e164: with or without the leading '+'
    country_source: str | None = None     # e164 / phone normalisers: column with the ISO region
    nullable: bool = False

    @property
    def source_column(self) -> str:
        return self.source or self.name

    @model_validator(mode="after")
    def _transform_args(self) -> "FieldSpec":
        needs_norm = self.transform in ("sha256", "hmac")
        if needs_norm and self.normaliser is None:
            raise ValueError(f"transform '{self.transform}' needs a normaliser")
        if not needs_norm and self.normaliser is not None:
            raise ValueError(f"transform '{self.transform}' takes no normaliser")
        # Free text is capped too: how much of it a vendor needs is part of the declaration, and an unbounded
        # cell (a 2 MB review) must not reach a vendor whole.
        if (self.transform in ("truncate", "text")) != (self.length is not None):
            raise ValueError("'length' goes with transforms 'truncate' and 'text' (required there) and only with them")
        phone = self.transform == "e164" or self.normaliser in PHONE_NORMALISERS
        if phone and not self.country_source:
            raise ValueError("phone transforms need 'country_source' (the column with the ISO region)")
        return self


class FeedSpec(Strict):
    id: Identifier
    description: str
    schedule: str
    window: Literal["snapshot", "previous_day"]  # previous_day: the query gets :window_start, :window_end
    query: str
    subject_column: str = "customer_id"   # identifies the person; recorded pseudonymously, never sent
    fields: list[FieldSpec] = Field(min_length=1)
    eligibility: list[Rule]
    batch_size: int = Field(default=500, gt=0)           # HTTPS records per POST
    row_count_tolerance: float = Field(default=0.5, gt=0)  # allowed relative change against the last delivery
    row_count_slack: int = Field(default=50, ge=0)          # ...plus this many rows either way (small feeds)
    retries: int = Field(default=3, ge=0)
    retry_delay_minutes: float = Field(default=2, gt=0)
    execution_timeout_minutes: float = Field(default=60, gt=0)

    @model_validator(mode="after")
    def _unique_fields(self) -> "FeedSpec":
        names = [f.name for f in self.fields]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate field names: {', '.join(dupes)}")
        if not re.search(r"\bselect\b", self.query, re.I):
            raise ValueError("query must be a SELECT statement")
        if self.window == "previous_day" and ":window_start" not in self.query:
            raise ValueError("a previous_day feed's query must filter on :window_start and :window_end")
        return self

    @property
    def sent_fields(self) -> list[FieldSpec]:
        return [f for f in self.fields if f.transform != "drop"]


class SftpTransport(Strict):
    kind: Literal["sftp"]
    conn_id: str
    path: str


class S3Transport(Strict):
    kind: Literal["s3"]
    conn_id: str
    bucket: str
    path: str = ""


class HttpsTransport(Strict):
    kind: Literal["https"]
    conn_id: str
    path: str = ""


Transport = Annotated[Union[SftpTransport, S3Transport, HttpsTransport], Field(discriminator="kind")]


class Encryption(Strict):
    method: Literal["pgp", "tls"]
    public_key: str | None = None  # file under include/policy/keys/

    @model_validator(mode="after")
    def _key(self) -> "Encryption":
        if (self.method == "pgp") != bool(self.public_key):
            raise ValueError("pgp needs 'public_key', and only pgp takes one")
        return self


class ErasureIdentifier(Strict):
    type: Literal["email", "phone", "customer_id", "order_id", "device_id", "cookie_id"]
    format: Literal["raw", "sha256", "hmac"]
    normaliser: Normaliser | None = None


class RetentionExemption(Strict):
    category: Category
    reason: str


class ErasureSpec(Strict):
    protocol: Literal["sftp_ack", "opendsr", "s3_removal_list"]
    transport: Transport | None = None    # where requests go, when not the feed transport
    identifiers: list[ErasureIdentifier] = Field(min_length=1)
    confirmation: Literal["ack_file", "api_poll_and_callback", "result_manifest"]
    always_notify: bool = False           # service providers told of every request (CCPA §7022, GDPR Art. 19)
    retention_exemptions: list[RetentionExemption] = []
    expected_response_days: int = Field(default=10, gt=0)


class Vendor(Strict):
    vendor: Identifier
    name: str
    recipient_category: Identifier
    purpose: Use
    owner: str
    contact: str
    transport: Transport
    encryption: Encryption
    feeds: list[FeedSpec] = Field(min_length=1)
    erasure: ErasureSpec

    @model_validator(mode="after")
    def _encryption_fits_transport(self) -> "Vendor":
        file_transport = self.transport.kind in ("sftp", "s3")
        if file_transport and self.encryption.method != "pgp":
            raise ValueError(f"{self.transport.kind} deliveries are files: encryption must be pgp")
        if not file_transport and self.encryption.method != "tls":
            raise ValueError("https deliveries are encrypted in transit: encryption must be tls")
        return self


class Register(Strict):
    vendors: dict[str, Vendor]

    def feeds(self) -> list[tuple[Vendor, FeedSpec]]:
        return [(v, f) for v in self.vendors.values() for f in v.feeds]

    def feed(self, feed_id: str) -> tuple[Vendor, FeedSpec]:
        for v, f in self.feeds():
            if f.id == feed_id:
                return v, f
        raise KeyError(f"unknown feed '{feed_id}' (known: {', '.join(f.id for _, f in self.feeds())})")

    def vendor(self, vendor_id: str) -> Vendor:
        try:
            return self.vendors[vendor_id]
        except KeyError:
            raise KeyError(f"unknown vendor '{vendor_id}' (known: {', '.join(sorted(self.vendors))})") from None
