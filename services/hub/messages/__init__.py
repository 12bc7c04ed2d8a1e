"""Message contracts: versioned, frozen event models and their upcasters."""

from hub.messages import cases, courier, insurance, ops, repair, storefront, timers, tracker
from hub.messages.catalogue import CATALOGUE

CATALOGUE.check()

__all__ = [
    "CATALOGUE",
    "cases",
    "courier",
    "insurance",
    "ops",
    "repair",
    "storefront",
    "timers",
    "tracker",
]
