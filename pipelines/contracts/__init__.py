"""The contracts every part shares: the event schemas (``schemas``), the topics and their
decoders (``topics``), keyed hashes of identifiers (``privacy``) and the environment's settings
(``settings``). Nothing here imports another part of Vigie."""
