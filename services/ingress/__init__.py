"""The HTTP front door: platform backends post CloudEvents; the hub puts them on Kafka."""
