"""Does a column hold personal data? A guess from its name and from a sample of its values.

Only labels and counts come out of here: `guess(name, values)` counts how many sampled values match each
pattern and returns the counts, never a value. Callers sample, call, and drop the sample.

Name patterns map to fideslang data categories (the register's vocabulary). Value patterns: e-mail
addresses, phone numbers (7-15 digits, optional '+' and separators), IPv4/IPv6 addresses, payment card
numbers (13-19 digits passing the Luhn check), UUIDs (device or cookie ids), calendar dates (a date of
birth?), and 'Firstname Lastname'-shaped text.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

# (pattern over the column name's words, fideslang category, label). Checked in order; first match wins.
NAME_PATTERNS: list[tuple[re.Pattern, str, str]] = [(re.compile(p), c, label) for p, c, label in [
    (r"(^|_)(e_?mail|email_address|mail)(_|$)", "user.contact.email", "e-mail"),
    (r"(^|_)(phone|mobile|msisdn|tel|telephone|cell|fax|whatsapp)(_|$)", "user.contact.phone_number", "phone"),
    (r"(^|_)(ssn|sin|nin|national_id|national_insurance|social_security|passport|tax_id|tin|driver_?licen[cs]e|id_card|nhs)(_|$)",
     "user.government_id", "government id"),
    (r"(^|_)(card|pan|iban|bic|account_number|bank|cvv|cvc|routing)(_|$)", "user.financial", "financial"),
    (r"(^|_)(birth|dob|birthday|birthdate|date_of_birth|age)(_|$)", "user.demographic.date_of_birth", "date of birth / age"),
    (r"(^|_)(gender|sex|ethnicity|race|religion|sexual|orientation|marital)(_|$)", "user.demographic", "demographic"),
    (r"(^|_)(health|medical|diagnosis|allergy|disability|biometric|fingerprint)(_|$)", "user.health_and_medical",
     "health"),
    (r"(^|_)(ip|ip_address|ipv4|ipv6)(_|$)", "user.device.ip_address", "IP address"),
    (r"(^|_)(device|device_id|idfa|gaid|aaid|advertising_id|imei|mac)(_|$)", "user.device.device_id", "device id"),
    (r"(^|_)(cookie|cookie_id|session_id|visitor_id)(_|$)", "user.device.cookie_id", "cookie id"),
    (r"(^|_)(user_agent|browser)(_|$)", "user.device", "device"),
    (r"(^|_)(lat|lng|lon|latitude|longitude|geo|gps|coordinates|location)(_|$)", "user.location.precise", "location"),
    (r"(^|_)(street|address|addr|city|town|postcode|postal|zip|zipcode|house)(_|$)", "user.contact.address", "address"),
    (r"(^|_)(first_?name|last_?name|full_?name|surname|given_name|family_name|maiden|nickname|name)(_|$)",
     "user.name", "name"),
    (r"(^|_)(username|login|handle|screen_name)(_|$)", "user.account.username", "username"),
    (r"(^|_)(password|passwd|secret|pin)(_|$)", "user.authorization.credentials", "credentials"),
    (r"(^|_)(salary|income|credit_score)(_|$)", "user.financial", "financial"),
    (r"(^|_)(note|notes|comment|comments|message|body|free_?text|bio|description)(_|$)", "user.content.private",
     "free text (may contain personal data)"),
]]

_EMAIL = re.compile(r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_PHONE = re.compile(r"^\s*(\+|00)?\(?[0-9][0-9 ().\-/]{5,22}[0-9]\s*$")
_IPV4 = re.compile(r"^\s*(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])){3}\s*$")
_IPV6 = re.compile(r"^\s*[0-9A-Fa-f]{0,4}(:[0-9A-Fa-f]{0,4}){2,7}\s*$")
_UUID = re.compile(r"^\s*[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\s*$")
_DATE = re.compile(r"^\s*(19|20)[0-9]{2}-[01][0-9]-[0-3][0-9]\s*$|^\s*[0-3]?[0-9][/.][01]?[0-9][/.](19|20)[0-9]{2}\s*$")
_PERSON = re.compile(r"^\s*[A-Z][a-zà-ÿ'\-]+( [A-Z][a-zà-ÿ'\-]+){1,2}\s*$")
_BOOLISH = {"0", "1", "true", "false", "t", "f", "yes", "no", "y", "n", ""}

# value pattern -> (category it suggests, strong: personal on its own)
VALUE_PATTERNS: dict[str, tuple[str, bool]] = {
    "email": ("user.contact.email", True),
    "phone": ("user.contact.phone_number", True),
    "ip_address": ("user.device.ip_address", True),
    "card_number": ("user.financial.credit_card", True),
    "uuid": ("user.device.device_id", False),
    "date": ("user.demographic.date_of_birth", False),
    "person_name": ("user.name", False),
}


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = ord(ch) - 48
        if i % 2:
            n *= 2
            if n > 9:
                n -= 9
        total += n
    return total % 10 == 0


def classify_value(value) -> str | None:
    """The first value pattern a value matches (or None). The value is not kept."""
    if value is None:
        return None
    text = str(value)
    if _EMAIL.search(text):
        return "email"
    if _IPV4.match(text) or (":" in text and _IPV6.match(text) and text.count(":") >= 2 and any(c.isalnum() for c in text)):
        return "ip_address"
    if _UUID.match(text):
        return "uuid"
    digits = re.sub(r"[^0-9]", "", text)
    if 13 <= len(digits) <= 19 and re.fullmatch(r"[0-9 \-]+", text.strip()) and _luhn(digits):
        return "card_number"
    if _DATE.match(text):
        return "date"
    if _PHONE.match(text) and 7 <= len(digits) <= 15 and not re.fullmatch(r"[0-9]{1,6}", text.strip()):
        return "phone"
    if _PERSON.match(text):
        return "person_name"
    return None


@dataclass(frozen=True)
class Guess:
    likelihood: str                     # likely | possible | unlikely
    category: str | None                # fideslang category suggested
    name_signal: str | None             # label of the name pattern matched
    value_signals: dict[str, int] = field(default_factory=dict)  # pattern -> matching sampled values (counts)
    sampled: int = 0                    # non-null values looked at
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def name_signal(column: str) -> tuple[str, str] | None:
    """(category, label) suggested by the column's name, or None."""
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", column).lower()
    for pattern, category, label in NAME_PATTERNS:
        if pattern.search(words):
            return category, label
    return None


def guess(column: str, values) -> Guess:
    """Guess from the name and the sampled values. `values` is consumed and not kept."""
    by_name = name_signal(column)
    counts: dict[str, int] = {}
    sampled = boolish = 0
    for v in values:
        if v is None:
            continue
        sampled += 1
        if str(v).strip().lower() in _BOOLISH:
            boolish += 1
        kind = classify_value(v)
        if kind:
            counts[kind] = counts.get(kind, 0) + 1
    reasons: list[str] = []
    best = max(counts.items(), key=lambda kv: kv[1], default=(None, 0))
    share = best[1] / sampled if sampled else 0.0
    strong_values = best[0] is not None and VALUE_PATTERNS[best[0]][1] and share >= 0.5
    weak_values = best[0] is not None and share >= 0.5
    # a date alone is not personal (order dates are dates too); with a name hint it may be a date of birth
    weak_alone = weak_values and best[0] != "date"
    flags_only = sampled > 0 and boolish == sampled
    if by_name:
        reasons.append(f"name looks like {by_name[1]}")
    if best[0] and share > 0:
        reasons.append(f"{best[1]} of {sampled} sampled values look like {best[0].replace('_', ' ')}")
    if flags_only:
        reasons.append("values are flags (yes/no)")
    category = by_name[0] if by_name else (VALUE_PATTERNS[best[0]][0] if weak_alone else None)
    if strong_values or (by_name and weak_values):
        likelihood = "likely"
        if strong_values and not by_name:
            category = VALUE_PATTERNS[best[0]][0]
    elif by_name and not flags_only:
        likelihood = "likely" if sampled == 0 or share > 0 or by_name[0] != "user.content.private" else "possible"
    elif by_name or weak_alone:
        likelihood = "possible"
    else:
        likelihood = "unlikely"
    return Guess(likelihood, category, by_name[1] if by_name else None, dict(sorted(counts.items())), sampled, reasons)
