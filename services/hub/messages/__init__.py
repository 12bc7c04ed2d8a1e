"""Message contracts: versioned, frozen event models and their upcasters."""

from hub.messages import cases, storefront
from hub.messages.catalogue import CATALOGUE

CATALOGUE.check()

__all__ = ["CATALOGUE", "cases", "storefront"]
