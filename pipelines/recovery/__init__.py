"""Account recovery: the case machine (``cases``: lock, verify, secure, review, restore) and its
stream stage (``stage``: takeover suspicions raised by the entity stage, cases kept in a table)."""
