"""A local Apache Kafka broker (KRaft) from Maven Central jars, for tests and the demo."""
