"""Vigie's pipeline, by part, from the ground up: ``contracts`` (events, topics, keyed hashes,
settings), ``kafka`` (broker and clients), ``services`` (the thin HTTP producers), ``lake``
(Parquet, the sink, imports), ``recovery`` (account takeover cases), ``stream`` (the Faust
worker: ingest → entities → decide), ``simulator``, ``bench`` and ``cli`` (``vigie``)."""
