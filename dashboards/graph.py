"""The network around a transfer: accounts, devices and cards within two hops, as Graphviz DOT."""
from __future__ import annotations

import pandas as pd

from dashboards import entity_index

MAX_NODES = 60


def neighbourhood(seeds: list[str], hops: int = 2) -> tuple[set[str], pd.DataFrame]:
    nodes, frontier = set(seeds), set(seeds)
    for _ in range(hops):
        near = entity_index.around(frontier)
        new = (set(near["a"]) | set(near["b"])) - nodes
        if len(nodes) + len(new) > MAX_NODES:
            new = set(sorted(new)[: max(0, MAX_NODES - len(nodes))])
        nodes |= new
        frontier = new
    inside = entity_index.around(nodes)
    inside = inside[inside["a"].isin(nodes) & inside["b"].isin(nodes)]
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
