"""The Faust apps. The worker, the event → decision path: ``ingest`` validates, the ``router``
routes, ``entities`` keeps each entity's feature state and reports a transfer's part, ``decide``
joins the parts, scores and decides; ``control`` holds rules, lists and models. The lake sink:
``lake_sink`` appends every topic to the lake, ``quality`` checks samples. ``worker`` wires both."""
