"""Vigie's stream side: event contracts, the Faust app and its agents, the thin services,
the simulator and the command line."""
