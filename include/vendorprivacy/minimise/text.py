"""Free text on its way to a vendor: no e-mails, no phone numbers, no spreadsheet formulas."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

EMAIL_PATTERN = r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+"
# Seven or more digits, optionally '+'-led and separated by spaces, dots, dashes or brackets.
PHONE_PATTERN = r"\+?\(?\d(?:[\s().\-]{0,2}\d){6,}"
# A cell that starts with one of these is a formula (or can become one) in a spreadsheet (OWASP CSV injection).
FORMULA_LEAD = r"^[=+\-@\t\r\x00]"
EMAIL_MASK = "[email removed]"
PHONE_MASK = "[phone removed]"


def neutralise_array(arr: pa.Array) -> pa.Array:
    text = arr if pa.types.is_string(arr.type) else pc.cast(arr, pa.string())
    text = pc.replace_substring_regex(text, pattern=EMAIL_PATTERN, replacement=EMAIL_MASK)
    text = pc.replace_substring_regex(text, pattern=PHONE_PATTERN, replacement=PHONE_MASK)
    text = pc.replace_substring(text, pattern="\x00", replacement="")
    leads = pc.fill_null(pc.match_substring_regex(text, pattern=FORMULA_LEAD), False)
    return pc.if_else(leads, pc.binary_join_element_wise("'", text, ""), text)


def neutralise(value: str | None) -> str | None:
    return neutralise_array(pa.array([value], pa.string()))[0].as_py()
