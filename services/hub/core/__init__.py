"""The kernel every service shares: envelope, registry, settings, logging, reliability."""
