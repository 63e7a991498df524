"""Hold the register to the notice: what each feed sends, why, and to whom."""
from __future__ import annotations

from dataclasses import dataclass

from .models import ADVERTISING_RULES, Notice, Register
from .taxonomy import covered_by


@dataclass(frozen=True)
class Finding:
    severity: str  # error | warning
    where: str     # vendor › feed › field
    message: str

    def __str__(self) -> str:
        return f"{self.severity.upper()}: {self.where}: {self.message}"


def lint(register: Register, notice: Notice) -> list[Finding]:
    found: list[Finding] = []

    def err(where: str, msg: str, severity: str = "error") -> None:
        found.append(Finding(severity, where, msg))

    for v in register.vendors.values():
        rc = notice.recipient_categories.get(v.recipient_category)
        if rc is None:
            err(f"vendor '{v.vendor}'", f"recipient category '{v.recipient_category}' is not in the notice")
            continue
        allowed_cats = notice.allowed_categories(v.recipient_category)
        allowed_uses = notice.allowed_uses(v.recipient_category)
        if not covered_by(v.purpose, allowed_uses):
            err(f"vendor '{v.vendor}'", f"purpose '{v.purpose}' is not declared in the notice for {v.recipient_category}")
        advertising = v.purpose.startswith("marketing.advertising") or rc.relationship == "third_party"
        marketing = v.purpose.startswith("marketing.communications")
        for feed in v.feeds:
            where = f"vendor '{v.vendor}' › feed '{feed.id}'"
            rules = set(feed.eligibility)
            if "min_age_13" not in rules:
                err(where, "under-13s are not excluded (add eligibility rule min_age_13)")
            if advertising and not ADVERTISING_RULES <= rules:
                missing = ", ".join(sorted(ADVERTISING_RULES - rules))
                err(where, f"advertising / sale-or-share feed without its consent rules (missing: {missing})")
            if marketing and "marketing_opt_in" not in rules:
                err(where, "marketing feed without a consent rule (add marketing_opt_in)")
            for f in feed.sent_fields:
                if not covered_by(f.category, allowed_cats):
                    err(f"{where} › field '{f.name}'",
                        f"sends data category '{f.category}', which the notice does not declare for {v.recipient_category}")
                if advertising and f.transform in ("keep", "e164", "email") and f.category.startswith("user.contact"):
                    err(f"{where} › field '{f.name}'", "contact data goes to advertising partners hashed, never raw")
    covered = {v.recipient_category for v in register.vendors.values()}
    for key, rc in notice.recipient_categories.items():
        if rc.channel == "customer_records" and key not in covered:
            err(f"notice › {key}", "recipient category receives customer records but no vendor in the register serves it", "warning")
    return found
