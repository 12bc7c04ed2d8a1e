"""The one registry of every message this hub reads or writes."""

from hub.core.registry import Registry

CATALOGUE = Registry()
