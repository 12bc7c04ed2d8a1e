"""The tracker service: case status and timeline, SLA clocks, ratings and statistics."""
