"""The notice and the vendor register as validated code."""
from .lint import Finding, lint
from .load import POLICY_DIR, PolicyError, key_path, load_notice, load_register
from .models import FeedSpec, FieldSpec, Notice, Register, Vendor

__all__ = ["POLICY_DIR", "Finding", "FeedSpec", "FieldSpec", "Notice", "PolicyError", "Register", "Vendor",
           "key_path", "lint", "load_notice", "load_register"]
