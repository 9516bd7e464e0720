"""Kafka plumbing shared by every component: the embedded broker, topic creation, producers and
consumers configured from the environment, consumer lag, and Faust's raw-bytes topics and tables."""
