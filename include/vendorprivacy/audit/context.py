"""Everything one audited night needs, gathered once (from Airflow connections, or given by a test or the CLI)."""
from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from vendorprivacy.keys import Keys
from vendorprivacy.ledger import Ledger
from vendorprivacy.policy.models import Notice, Register, Vendor


def reports_root() -> Path:
    """VENDORPRIVACY_REPORTS_DIR, else <state dir>/reports (.state/reports by default); the erasure evidence
    lives in its erasure/ folder, the audit in audit/."""
    if os.environ.get("VENDORPRIVACY_REPORTS_DIR"):
        return Path(os.environ["VENDORPRIVACY_REPORTS_DIR"])
    from vendorprivacy.orchestration.settings import DEFAULT_STATE

    return DEFAULT_STATE / "reports"


@dataclass
class AuditContext:
    register: Register
    notice: Notice
    ledger: Ledger
    shop_url: str
    keys: Keys
    day: dt.date                    # the night audited: deliveries with logical date in (day - lookback, day]
    reports_dir: Path               # the reports root; this night's files go to <reports_dir>/audit/<day>/
    lookback_days: int = 1
    history_days: int = 30          # how far back the charts go
    verify_copies: bool = True      # read each vendor's copy back through the transports
    send_removals: bool = True      # consent drift: send advertising partners a removal list tonight
    margin_days: int = 7            # erasure pairs due within this many days are at risk
    record_alerts: bool = True      # add deadline alerts to the requests' timelines (once each)
    sample_rows: int = 200          # values sampled per new column (counted against patterns, never kept)
    run_id: str = ""
    protocol_factory: Callable[[Vendor], object] | None = None
    protocol_options: dict = field(default_factory=dict)
    _protocols: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not self.run_id:
            self.run_id = f"audit-{self.day.isoformat()}"

    @property
    def window(self) -> tuple[dt.date, dt.date]:
        """First and last logical date audited (inclusive)."""
        return self.day - dt.timedelta(days=self.lookback_days - 1), self.day

    @property
    def out_dir(self) -> Path:
        return Path(self.reports_dir) / "audit" / self.day.isoformat()

    @property
    def erasure_store(self):
        from vendorprivacy.erasure.store import ErasureStore

        return ErasureStore(self.ledger)

    def protocol(self, vendor_id: str):
        """The vendor's erasure protocol client (vendorprivacy.erasure.protocols), built once."""
        if vendor_id not in self._protocols:
            vendor = self.register.vendor(vendor_id)
            if self.protocol_factory is not None:
                self._protocols[vendor_id] = self.protocol_factory(vendor)
            else:
                from vendorprivacy.erasure.protocols import protocol_for

                self._protocols[vendor_id] = protocol_for(vendor, **self.protocol_options)
        return self._protocols[vendor_id]


def context_from_settings(day: dt.date, **options) -> AuditContext:
    """An AuditContext from the Airflow connections / environment (vendorprivacy.orchestration.settings)."""
    from vendorprivacy.orchestration import settings
    from vendorprivacy.policy import load_notice, load_register

    root = reports_root()
    options.setdefault("protocol_options", {"evidence_dir": root / "audit" / "vendor_answers"})
    return AuditContext(register=load_register(), notice=load_notice(), ledger=settings.ledger(),
                        shop_url=settings.shop_url(), keys=settings.keys(), day=day, reports_dir=root, **options)
