"""``vigie simulate``: a seeded agent-based simulation of a messenger population, its
legitimate payments and its fraud, with ground-truth labels.

- ``population``: users, their devices, cards and bank accounts, and the social graph.
- ``texts``: the messages people type, in French and English, by intent.
- ``timing``: how long people take, realistic (offline) or compressed (live demo).
- ``world``: what every agent script sees (clock, randomness, population) and the commands
  it yields; shared sub-scripts (onboarding, paying after a money talk).
- ``legit`` and ``fraud``: the agent scripts, one generator per episode.
- ``offline``: runs the scripts on a simulated clock and writes a Parquet lake;
  ``offline_services`` stands in for the three services there (same request functions).
- ``live``: runs the same scripts in real time against the three HTTP services.
- ``owners``: how account owners answer a recovery challenge.
- ``events``: events built by hand (``Log``) for tests and benchmarks.

How scripts and drivers meet: docs/simulator.md#scripts
"""
