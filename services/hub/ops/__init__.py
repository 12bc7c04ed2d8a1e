"""On-call tooling for dead letters: read, select, group, replay, edit, purge, audit."""
