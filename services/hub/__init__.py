"""The after-sales repair integration hub: its kernel, contracts, CLI and broker harness."""
