"""The repair service: tickets at the repair center, diagnosis, quotes, refunds, replacements."""
