"""The notifications service's adapters: Kafka records in and out through the stream runtime, state
stores, and the I/O its pure core (`domain/`) never does."""
