"""What every notebook does first: makes the repository importable and finds the lake it reads:
the one it is given (its ``LAKE`` parameter, or ``VIGIE_NOTEBOOK_LAKE``: e.g. the live system's
``data/local/lake``, read beside the sink without a lock), or else a fresh simulated one in a
temporary directory, so that it runs top to bottom anywhere."""
from __future__ import annotations

import io
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
# Simulated lakes only need a key to hash their identifiers: a notebook never writes a real one.
os.environ.setdefault("VIGIE_HASH_KEY", "notebook-demo-key")
WORK = Path(tempfile.mkdtemp(prefix="vigie-nb-"))


def given_lake() -> str | None:
    """The lake named in the environment (``VIGIE_NOTEBOOK_LAKE``), if any."""
    return os.environ.get("VIGIE_NOTEBOOK_LAKE") or None


def lake(given: str | Path | None, name: str = "lake", **simulate) -> Path:
    """``given`` (relative to the repository, or absolute), or a lake simulated now with
    ``run_offline(**simulate)`` under a temporary directory."""
    if given:
        path = (REPO / Path(given).expanduser()).resolve()
        if not path.is_dir():
            raise FileNotFoundError(f"no lake at {path} (vigie run writes data/local/lake; "
                                    "vigie simulate --offline --out DIR writes one)")
        return path
    from pipelines.simulator.offline import run_offline  # why here: after the path is set

    run_offline(WORK / name, **simulate)
    return WORK / name


def png(fig):
    """A matplotlib figure as an image the notebook keeps (whatever the backend)."""
    from IPython.display import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return Image(data=buffer.getvalue())
