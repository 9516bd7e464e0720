"""Kafka plumbing shared by every component: the embedded broker, topic creation,
producers and consumers configured from the environment."""
