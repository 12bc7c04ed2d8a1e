"""Message contracts: versioned, frozen event models and their upcasters."""

from hub.messages import (
    cases,
    courier,
    damage,
    insurance,
    ops,
    parts,
    repair,
    scores,
    storefront,
    timers,
    tracker,
)
from hub.messages.catalogue import CATALOGUE

CATALOGUE.check()

__all__ = [
    "CATALOGUE",
    "cases",
    "courier",
    "damage",
    "insurance",
    "ops",
    "parts",
    "repair",
    "scores",
    "storefront",
    "timers",
    "tracker",
]
