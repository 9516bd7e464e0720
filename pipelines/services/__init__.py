"""The three thin HTTP services: messaging, payment and assistant. They validate, publish
and (payment) apply decisions; no fraud logic lives here. ``vigie serve <name>`` runs one."""
