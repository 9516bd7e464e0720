"""Every setting is documented, in the code and in the README's configuration table alike.

The settings model (``pipelines/contracts/settings.py``) is the one place the environment is
read: each of its fields is a variable with a description, each is a row of the README's table,
and each row is a field. Names the code mentions elsewhere (a message that names one, the
environment a child process is given, an f-string's head such as ``VIGIE_RECOVERY_SLA_{state}_S``)
must be in the table too, and no module reads a setting around the model."""
from __future__ import annotations

import re
from pathlib import Path

from pipelines.contracts import settings

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = ROOT / "pipelines" / "contracts" / "settings.py"
CODE = ("pipelines", "features", "models", "dashboards", "notebooks")
# a name, or the constant head of one built in an f-string ("VIGIE_RECOVERY_SLA_" + state)
NAME = re.compile(r"\bVIGIE_[A-Z0-9_]*[A-Z0-9_]")
# os.environ.get("VIGIE_…"), os.environ["KAFKA_…"] (not an assignment), os.getenv(f"VIGIE_…")
DIRECT_READ = re.compile(r"""(?:os\.environ\.get\(|os\.getenv\(|os\.environ\[)\s*f?["']"""
                         r"""((?:VIGIE|KAFKA)_\w*)["'{](?!\]\s*=[^=])""")
# The Quix Streams peer of the benchmarks runs in its own Python and never imports Vigie
# (its docstring); the notebooks' setup, which makes Vigie importable, reads VIGIE_NOTEBOOK_LAKE
# itself (a field all the same, so the table and the model agree).
READS_ON_THEIR_OWN = {"pipelines/bench/peer_quix_app.py", "notebooks/nbsetup.py"}


def names_in_code() -> dict[str, str]:
    """name -> the first file that names it."""
    found: dict[str, str] = {}
    for package in CODE:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == SETTINGS:  # its fields are checked as fields (an env_prefix is no name)
                continue
            for name in NAME.findall(path.read_text()):
                found.setdefault(name, str(path.relative_to(ROOT)))
    return found


def direct_reads() -> dict[str, str]:
    """variable -> a file that reads it from os.environ itself."""
    return {name: str(path.relative_to(ROOT)) for package in CODE
            for path in sorted((ROOT / package).rglob("*.py"))
            if str(path.relative_to(ROOT)) not in READS_ON_THEIR_OWN
            and path != SETTINGS for name in DIRECT_READ.findall(path.read_text())}


def configuration_table() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    return "\n".join(line for line in section.splitlines() if line.startswith("|"))


def rows_by_variable(table: str) -> dict[str, list[str]]:
    """variable -> its row's cells; a row is about the variables of its first cell, e.g.
    ``VIGIE_RECOVERY_SLA_<STATE>_S``."""
    return {name: row.split("|")[1:-1] for row in table.splitlines()[2:]
            for name in re.findall(r"`((?:VIGIE|KAFKA)_[A-Z0-9_<>]+)`", row.split("|")[1])}


def table_variables(table: str) -> set[str]:
    return set(rows_by_variable(table))


def row_of(variable: str, rows: set[str]) -> str | None:
    """The row a variable is in: its own, or a pattern's (``<STATE>`` stands for a word)."""
    for row in rows:
        if re.fullmatch(re.sub(r"<[A-Z]+>", "[A-Z_]+", row), variable):
            return row
    return None


def documented(name: str, table: str) -> bool:
    """In a table cell as itself, or, for an f-string's head, as ``<HEAD><SOMETHING>…``."""
    if name.endswith("_"):
        return re.search(re.escape(name) + r"<[A-Z]+>", table) is not None
    return re.search(r"`" + re.escape(name) + r"`", table) is not None


def test_the_scans_find_what_they_must():
    found = names_in_code()
    # a child process's environment, a message, an f-string's head
    assert {"VIGIE_DATA_DIR", "VIGIE_WORKER_NAME", "VIGIE_RECOVERY_SLA_"} <= set(found)
    assert not documented("VIGIE_NOT_A_SETTING", configuration_table())
    rows = table_variables(configuration_table())
    assert row_of("VIGIE_RECOVERY_SLA_OWNER_VERIFICATION_S", rows) == "VIGIE_RECOVERY_SLA_<STATE>_S"
    assert row_of("VIGIE_NOT_A_SETTING", rows) is None
    reads = ('os.environ.get("VIGIE_A") os.environ["KAFKA_B"] os.getenv(f"VIGIE_C_{x}") '
             'os.environ["VIGIE_D"] = name os.environ.get("HOME")')
    assert DIRECT_READ.findall(reads) == ["VIGIE_A", "KAFKA_B", "VIGIE_C_"]


def test_every_setting_is_a_described_row_of_the_readme_table():
    rows = table_variables(configuration_table())
    fields = settings.variables()
    undocumented = sorted(name for name in fields if row_of(name, rows) is None)
    assert not undocumented, f"settings fields not in README.md's configuration table: {undocumented}"
    undescribed = sorted(name for name, info in fields.items() if not (info.description or "").strip())
    assert not undescribed, f"settings fields without a description: {undescribed}"


def test_every_row_of_the_readme_table_is_a_setting():
    fields = settings.variables()
    stale = sorted(row for row in table_variables(configuration_table())
                   if not any(row_of(name, {row}) for name in fields))
    assert not stale, f"README.md documents variables no setting reads: {stale}"


def test_every_setting_the_code_names_is_in_the_readme_table():
    table = configuration_table()
    missing = {name: where for name, where in names_in_code().items()
               if not documented(name, table)}
    assert not missing, f"not in README.md's configuration table: {missing}"


def test_no_module_reads_a_setting_around_the_settings_model():
    reads = direct_reads()
    assert not reads, f"read from os.environ, not from pipelines.contracts.settings: {reads}"


def shown(default) -> str | None:
    """A default as the table writes it (``30`` for 30.0); None: a default the table words
    (unset, a path under the data dir)."""
    if default is None or isinstance(default, (bool, Path)):
        return None
    if isinstance(default, float) and default.is_integer():
        return str(int(default))
    return str(default)


def test_the_readme_table_gives_each_setting_its_default():
    rows = rows_by_variable(configuration_table())
    wrong = {}
    for name, info in settings.variables().items():
        row, text = row_of(name, set(rows)), shown(info.default)
        if row is None or text is None:
            continue
        cell = rows[row][1]
        if "<" in row:  # a pattern's row lists each one's: "opened 2, contained 60, …"
            head, tail = row.split("<")[0], row.split(">")[1]
            text = f"{name[len(head):-len(tail)].lower()} {text}"
        if not re.search(r"(?<![\w.])" + re.escape(text) + r"(?![\w.])", cell):
            wrong[name] = (text, cell.strip())
    assert len(rows) > 50 and not wrong, f"README.md's default differs from the settings': {wrong}"
