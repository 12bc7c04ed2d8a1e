"""Message contracts: versioned, frozen event models and their upcasters."""

from hub.messages import cases, courier, repair, storefront, timers
from hub.messages.catalogue import CATALOGUE

CATALOGUE.check()

__all__ = ["CATALOGUE", "cases", "courier", "repair", "storefront", "timers"]
