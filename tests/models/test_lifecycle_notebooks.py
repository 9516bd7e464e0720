"""The data scientists' notebooks (jupytext ``.py`` files in notebooks/) run top to bottom, each
on a lake simulated for it or on the lake it is given (``VIGIE_NOTEBOOK_LAKE``), and what they
show is what their lake holds: after the last cell, a probe cell counts each topic's rows in the
notebook's lakes (``LAKES``) straight from the Parquet footers (not through DuckDB or the lake
module the notebook reads with), and the figures the notebook displayed are checked against
those counts; the fraud-ring notebook draws the ring."""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("[0-9]*.py"))
PROBE = '''import json as _json, pyarrow.parquet as _pq
print("PROBE" + _json.dumps({name: {topic.name: sum(_pq.ParquetFile(f).metadata.num_rows
                                                    for f in topic.rglob("*.parquet"))
                                    for topic in lake.iterdir() if topic.is_dir()}
                             for name, lake in LAKES.items()}))'''


def test_there_are_at_least_three_notebooks():
    assert len(NOTEBOOKS) >= 3


def _texts(cell) -> list[str]:
    """A code cell's printed and displayed text."""
    out = []
    for o in cell.get("outputs", []):
        out.append(o.get("text", "") if o.output_type == "stream" else o.get("data", {}).get("text/plain", ""))
    return out


def _series(text: str) -> dict[str, int]:
    """A pandas series of counts as displayed: one ``name  count`` line each, then its name."""
    return {k: int(v) for k, v in (line.split() for line in text.splitlines()
                                   if line.strip() and not line.startswith("Name:"))}


def _last_column(text: str) -> list[int]:
    """The last column of a pandas frame of counts as displayed (below its header)."""
    return [int(line.split()[-1]) for line in text.splitlines()[1:] if line.strip()]


def _explore(cells, rows):
    """The first figure shown is the events per topic: each is the topic's rows in the lake."""
    shown = _series(_texts(cells[0])[-1])
    assert shown == {t: n for t, n in rows["lake"].items() if n}, (shown, rows["lake"])


def _train(cells, rows):
    """The training set's transfers are the history's transfer requests; the model card's PR
    curve is shown as an image."""
    printed = next(t for c in cells for t in _texts(c) if t.startswith("{'transfers'"))
    assert ast.literal_eval(printed.strip())["transfers"] == rows["history"]["transfer-requests"]
    assert any("image/png" in o.get("data", {}) for c in cells for o in c.get("outputs", []))


def _ring(cells, rows):
    """The labels by scenario and kind add up to every label in the lake; the ring is drawn."""
    table = _texts(cells[0])[-1]
    assert sum(_last_column(table)) == rows["lake"]["labels"] > 0, table
    drawn = next(c for c in cells if any(t.startswith("ring: ") for t in _texts(c)))
    nodes, links = map(int, re.search(r"ring: (\d+) accounts, (\d+) payment links",
                                      "".join(_texts(drawn))).groups())
    assert nodes >= 4 and links >= 3  # payers, mules and where the money went
    assert any("image/png" in o.get("data", {}) for o in drawn.get("outputs", []))


CHECKS = {"01_explore_the_lake": _explore, "02_train_and_evaluate": _train,
          "03_fraud_ring_investigation": _ring}


def test_every_notebook_has_its_content_check():
    assert set(CHECKS) == {p.stem for p in NOTEBOOKS}


def run_notebook(path: Path, tmp_path: Path, monkeypatch) -> tuple[list, dict]:
    """Execute the notebook plus the probe: (its code cells after the parameters, the probe's
    row counts)."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    jupytext = pytest.importorskip("jupytext")

    monkeypatch.setenv("VIGIE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = jupytext.read(path)
    nb.cells.append(nbformat.v4.new_code_cell(PROBE))
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=300,
                                     resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    code = [c for c in nb.cells if c.cell_type == "code"
            and "parameters" not in c.metadata.get("tags", [])]  # the first cell: the lake's
    errors = [o for c in code for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    probe = "".join(_texts(code[-1]))
    return code[:-1], json.loads(re.search(r"PROBE(.*)", probe).group(1))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom_and_shows_its_lake(path, tmp_path, monkeypatch):
    monkeypatch.delenv("VIGIE_NOTEBOOK_LAKE", raising=False)  # each simulates its own
    CHECKS[path.stem](*run_notebook(path, tmp_path, monkeypatch))


def test_a_notebook_reads_the_lake_it_is_given(tmp_path, monkeypatch):
    """The explorer on a lake written before (as the live system's is): it shows that lake's
    rows, and simulates nothing of its own."""
    from pipelines.simulator.offline import run_offline

    given = tmp_path / "given-lake"
    run_offline(given, seed=5, users=150, days=2)
    monkeypatch.setenv("VIGIE_NOTEBOOK_LAKE", str(given))
    explore = next(p for p in NOTEBOOKS if p.stem == "01_explore_the_lake")
    cells, rows = run_notebook(explore, tmp_path, monkeypatch)
    assert list(rows) == ["lake"] and rows["lake"]["transfer-requests"] > 0
    _explore(cells, rows)
    shown = _series(_texts(cells[0])[-1])
    assert shown["transfer-requests"] == rows["lake"]["transfer-requests"]
