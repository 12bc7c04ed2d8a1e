"""`hub console`: the on-call web console over the operations of `hub dlq`."""
