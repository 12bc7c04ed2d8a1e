"""The notify service: one message per milestone, case and channel, in the customer's language."""
