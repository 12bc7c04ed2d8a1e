"""`make bench`: the hub's cost next to the Kafka client's limit, measured in one run."""
