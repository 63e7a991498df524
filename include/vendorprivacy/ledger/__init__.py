"""The ledger: what left, to whom, and who may no longer be shared. Never the data itself."""
from .store import Delivery, Ledger
from .tables import metadata

__all__ = ["Delivery", "Ledger", "metadata"]
