"""The state store: inbox, per-key state and parked messages, on SQLite or PostgreSQL."""
