"""The Faust worker, the event → decision path: ``ingest`` validates, the ``router`` routes,
``entities`` keeps each entity's feature state and reports a transfer's part, ``decide`` joins
the parts, scores and decides; ``control`` holds rules, lists and models; ``worker`` wires it."""
