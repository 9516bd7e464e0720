"""Feature definitions: pure Python, no Kafka, event time. The same code runs in the stream
and in the offline replay.

- ``state``: the storage layer every entity state shares (clock, time base, msgpack, expiry);
- ``family``: a family of features, declared once where its values are computed;
- the families: ``velocity``, ``conversation``, ``security``, ``graph``, ``risk``;
- the entity states that hold them: ``account``, ``links`` (device, card, IP);
- ``routing`` (which state learns what), ``vector`` (the names, in the model's order; the warning
  codes), ``sources`` (what each feature needs), ``replay`` (the offline path);
- ``windows`` (time units, the window rule), ``message_signals`` (a message's text -> signals).
"""
