"""The network around a transfer: accounts, devices and cards within two hops, as Graphviz DOT."""
from __future__ import annotations

import pandas as pd

from dashboards import common

EDGES_SQL = """
    SELECT account AS a, device AS b, 'device' AS kind FROM account_events WHERE device IS NOT NULL
    UNION SELECT account, card, 'card' FROM account_events WHERE card IS NOT NULL
    UNION SELECT sender, device, 'device' FROM transfer_requests WHERE device IS NOT NULL
    UNION SELECT sender, card, 'card' FROM transfer_requests WHERE card IS NOT NULL
    UNION SELECT sender, recipient, 'paid' FROM transfer_requests
"""
MAX_NODES = 60


def edges() -> pd.DataFrame:
    return common.q(f"SELECT DISTINCT * FROM ({EDGES_SQL})")


def neighbourhood(seeds: list[str], hops: int = 2) -> tuple[set[str], pd.DataFrame]:
    all_edges = edges()
    nodes, frontier = set(seeds), set(seeds)
    for _ in range(hops):
        near = all_edges[all_edges["a"].isin(frontier) | all_edges["b"].isin(frontier)]
        new = (set(near["a"]) | set(near["b"])) - nodes
        if len(nodes) + len(new) > MAX_NODES:
            new = set(sorted(new)[: max(0, MAX_NODES - len(nodes))])
        nodes |= new
        frontier = new
    inside = all_edges[all_edges["a"].isin(nodes) & all_edges["b"].isin(nodes)]
    return nodes, inside


def dot(seeds: list[str], flagged: set[str] = frozenset(), hops: int = 2) -> tuple[str, int]:
    nodes, inside = neighbourhood(seeds, hops)
    shape = {"a": "ellipse", "d": "box", "k": "diamond"}
    lines = ["graph G {", 'graph [rankdir=LR, fontsize=10];', 'node [fontsize=9, style=filled];']
    for n in sorted(nodes):
        colour = "#f4a6a6" if n in flagged else ("#ffd27f" if n in seeds else "#dde6f0")
        lines.append(f'"{n}" [shape={shape.get(n[0], "ellipse")}, fillcolor="{colour}", '
                     f'label="{n[:10]}…"];')
    for a, b, kind in inside.itertuples(index=False):
        style = "solid" if kind == "paid" else "dashed"
        lines.append(f'"{a}" -- "{b}" [style={style}, label="{kind}", fontsize=8];')
    lines.append("}")
    return "\n".join(lines), len(nodes)
