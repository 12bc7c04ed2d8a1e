"""The lab: broker harness, benchmarks, fault suite, demo, samples and partner simulators.

It lives in the repository, not in the product wheel.
"""
