"""Training, evaluation, thresholds, registry, rules, lists, policy and the scorer used by the stream."""
