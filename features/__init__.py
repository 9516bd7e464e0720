"""Feature definitions: pure Python, no Kafka, event time. The same code runs in the stream
and in the offline replay."""
