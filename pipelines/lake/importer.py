"""``vigie import``: bring your own history. A payment provider's transfers, delayed labels and
(optionally) sign-ups, from CSV or Parquet, become a lake in Vigie's layout that ``vigie
validate``, ``vigie train`` and ``vigie evaluate`` read like any other.

Contract: files are streamed (bounded memory); raw account ids are pseudonymized, never
stored; a bad row goes to ``<out>/rejects.csv`` (file, line, reason: never a value) and the
rest imports; a transfer id is imported once; ``<out>/sources.json`` declares the families.
How each is kept: docs/lake.md#importer.

Formats (column names after ``--map SOURCE=TARGET`` renames):
- transfers: ``transfer_id, ts, sender, recipient, amount`` [``currency``, default EUR]
- labels: ``transfer_id, kind, known_at`` [``party``: sender | recipient | unknown (default);
  ``is_fraud``: only for the bare kind ``analyst_verdict``]
- accounts: ``account, signup_ts``
Times are ISO 8601 (no offset: UTC) or epoch milliseconds; amounts are decimals in currency
units, converted to integer cents exactly:

>>> parse_ms("2026-11-27T14:00:00", "ts"), parse_ms("1795788000000", "ts"), parse_cents("12.50")
(1795788000000, 1795788000000, 1250)
"""
from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import re
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Callable, Iterator, Optional

import duckdb
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pycountry
from tqdm import tqdm

from features.sources import FAMILIES
from pipelines.contracts import schemas as s, settings
from pipelines.contracts.privacy import pseudonymize
from pipelines.lake.writer import FLUSH_ROWS, LakeWriter

BATCH_ROWS = 65_536
MANIFEST = "sources.json"
REJECTS = "rejects.csv"
MIN_MS, MAX_MS = 1_000_000_000_000, 9_999_999_999_999  # the schemas' Millis
MAX_CENTS = 10_000_000_00  # the schemas' Cents
MAX_RAW_ID = 128  # the services' RawId
_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,62}$")  # a TransferId that leaves room for ".r"
_TRUE, _FALSE = {"true", "1", "yes", "y", "t"}, {"false", "0", "no", "n", "f"}

# Label kinds: Vigie's own names and the aliases a provider's export may use (lower case,
# spaces and hyphens read as "_") -> (Label.kind, is_fraud; None: from the is_fraud column).
LABEL_KINDS: dict[str, tuple[str, Optional[bool]]] = {}
for _names, _kind in [
    (("chargeback", "cb", "charge_back", "dispute"), ("chargeback", True)),
    (("user_scam_report", "scam_report", "scam", "user_report", "fraud_report"),
     ("user_scam_report", True)),
    (("analyst_verdict_fraud", "verdict_fraud", "analyst_fraud", "confirmed_fraud", "fraud"),
     ("analyst_verdict", True)),
    (("analyst_verdict_legit", "verdict_legit", "analyst_legit", "legit", "legitimate",
      "not_fraud", "false_positive"), ("analyst_verdict", False)),
    (("analyst_verdict",), ("analyst_verdict", None)),
    (("ato_confirmed", "takeover_confirmed", "takeover", "account_takeover", "ato"),
     ("ato_confirmed", True)),
    (("not_ato", "takeover_refuted"), ("not_ato", False)),
]:
    LABEL_KINDS.update(dict.fromkeys(_names, _kind))
PARTIES = ("sender", "recipient", "unknown")


def _iso4217() -> frozenset[str]:

    # Funds, metals, test and "no currency" codes are in ISO 4217 but are not money sent.
    not_money = {"XAG", "XAU", "XBA", "XBB", "XBC", "XBD", "XDR", "XPD", "XPT", "XSU", "XTS",
                 "XUA", "XXX"}
    return frozenset(c.alpha_3 for c in pycountry.currencies) - not_money


class Reject(ValueError):
    """Why a row was refused: a field and a problem, never the value itself."""


class ImportFailed(RuntimeError):
    """A whole file cannot be read (missing column, unknown format, non-empty output)."""


# --- one field at a time --------------------------------------------------------------------
def _present(value, name: str):
    if value is None or (isinstance(value, str) and value.strip() == ""):
        raise Reject(f"{name}: missing")
    return value


def parse_ms(value, name: str) -> int:
    """ISO 8601 (no offset: UTC) or epoch milliseconds, as epoch milliseconds."""
    _present(value, name)
    if isinstance(value, dt.datetime):
        when = value
    elif isinstance(value, int) and not isinstance(value, bool):
        return _in_range(value, name)
    else:
        text = str(value).strip()
        if text.isdigit():
            return _in_range(int(text), name)
        try:
            when = dt.datetime.fromisoformat(text)
        except ValueError:
            raise Reject(f"{name}: not ISO 8601 or epoch milliseconds") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return _in_range(int(when.timestamp() * 1000), name)


def _in_range(ms: int, name: str) -> int:
    if not MIN_MS <= ms <= MAX_MS:
        raise Reject(f"{name}: out of range (2001-2286; epoch seconds instead of milliseconds?)")
    return ms


def parse_cents(value) -> int:
    """A decimal amount in currency units, as integer cents, exactly (no float on the way)."""
    _present(value, "amount")
    if isinstance(value, bool):
        raise Reject("amount: not a decimal number")
    try:
        amount = Decimal(repr(value) if isinstance(value, float) else str(value).strip())
    except InvalidOperation:
        raise Reject("amount: not a decimal number") from None
    if not amount.is_finite():
        raise Reject("amount: not a decimal number")
    cents = amount * 100
    if cents != cents.to_integral_value():
        raise Reject("amount: more than 2 decimals")
    if cents <= 0:
        raise Reject("amount: zero or negative")
    if cents > MAX_CENTS:
        raise Reject("amount: over 10,000,000")
    return int(cents)


def _account(value, name: str) -> str:
    raw = _present(value, name)
    raw = raw if isinstance(raw, str) else str(raw)
    if len(raw) > MAX_RAW_ID:
        raise Reject(f"{name}: longer than {MAX_RAW_ID} characters")
    return pseudonymize("account", raw)


def _transfer_id(value) -> str:
    text = str(_present(value, "transfer_id")).strip()
    if not _ID.match(text):
        raise Reject("transfer_id: not 1-62 characters of A-Z a-z 0-9 _ . : -")
    return text


def _choice(value, default: str) -> str:
    """A name as lower_snake_case ("Scam report" -> "scam_report"), or ``default`` if blank."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    return str(value).strip().lower().replace(" ", "_").replace("-", "_")


def _bool(value, name: str) -> bool:
    text = _choice(value, "")
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise Reject(f"{name}: missing or not true/false")


# --- reading files in batches ---------------------------------------------------------------
@dataclass
class Source:
    """One input file, read in bounded batches with its columns renamed by ``--map``."""
    path: Path
    renames: dict[str, str]
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    rejects: Optional["Rejects"] = None  # where malformed CSV rows go (None: not reported)
    rows: Optional[int] = None  # known up front for Parquet
    only: tuple[str, ...] = ()  # read these columns alone (the required ones are still checked)

    def batches(self) -> Iterator[tuple[list[int], dict[str, list]]]:
        """(line numbers, {column: values}) per batch; absent optional columns are all None."""
        suffix = self.path.suffix.lower()
        if suffix == ".csv":
            yield from self._csv()
        elif suffix in (".parquet", ".pq"):
            yield from self._parquet()
        else:
            raise ImportFailed(f"{self.path.name}: not .csv or .parquet")

    def _columns(self, names: list[str]) -> dict[str, str]:
        """target name -> source column, checking the required ones are there."""
        targets = {self.renames.get(n, n): n for n in names}
        missing = [c for c in self.required if c not in targets]
        if missing:
            raise ImportFailed(f"{self.path.name}: no column {', '.join(missing)} "
                               f"(columns: {', '.join(names)}; rename with --map SOURCE=TARGET)")
        return {t: targets[t] for t in self.only or self.required + self.optional if t in targets}

    def _shape(self, batch: pa.RecordBatch, columns: dict[str, str]) -> dict[str, list]:
        out = {t: batch.column(src).to_pylist() for t, src in columns.items()}
        for name in () if self.only else self.optional:
            out.setdefault(name, [None] * batch.num_rows)
        return out

    def _csv(self):

        with open(self.path, newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f), None)
        if not header:
            raise ImportFailed(f"{self.path.name}: empty file")
        columns = self._columns(header)
        bad_lines: set[int] = set()

        def invalid(row) -> str:
            if row.number is not None:
                bad_lines.add(row.number)
            if row.number is not None and self.rejects is not None:
                self.rejects.add(self.path, row.number,
                                 f"row: {row.actual_columns} columns, expected {row.expected_columns}")
            return "skip"

        reader = pcsv.open_csv(
            self.path,
            read_options=pcsv.ReadOptions(use_threads=False, block_size=4 << 20),
            parse_options=pcsv.ParseOptions(invalid_row_handler=invalid, ignore_empty_lines=False),
            convert_options=pcsv.ConvertOptions(column_types={n: pa.string() for n in header},
                                                include_columns=list(columns.values())))
        line = 1  # the header
        for batch in reader:
            lines = []
            while len(lines) < batch.num_rows:
                line += 1
                if line not in bad_lines:
                    lines.append(line)
            shaped = self._shape(batch, columns)
            blank = [i for i in range(batch.num_rows)
                     if all(shaped[c][i] in ("", None) for c in columns)]
            if blank:  # an empty line: nothing to import, nothing to reject
                keep = sorted(set(range(batch.num_rows)) - set(blank))
                lines = [lines[i] for i in keep]
                shaped = {c: [v[i] for i in keep] for c, v in shaped.items()}
            yield lines, shaped

    def _parquet(self):
        pf = pq.ParquetFile(self.path)
        self.rows = pf.metadata.num_rows
        columns = self._columns(pf.schema_arrow.names)
        row = 0
        for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=list(columns.values())):
            yield list(range(row + 1, row + 1 + batch.num_rows)), self._shape(batch, columns)
            row += batch.num_rows


class Rejects:
    """``rejects.csv``: file (its name), line, reason; counted by file path and reason."""

    def __init__(self, path: Path):
        self._file = open(path, "w", newline="", encoding="utf-8")
        self._csv = csv.writer(self._file)
        self._csv.writerow(["file", "line", "reason"])
        self.counts: dict[str, Counter] = {}

    def add(self, source: Path, line: int, reason: str) -> None:
        self._csv.writerow([source.name, line, reason])
        self.counts.setdefault(str(source), Counter())[reason] += 1

    def close(self) -> None:
        self._file.close()


# --- the import --------------------------------------------------------------------------------
@dataclass
class Importer:
    out: Path
    renames: dict[str, str] = field(default_factory=dict)
    progress: bool = False

    def __post_init__(self):
        self.out = Path(self.out)
        if self.out.exists() and any(self.out.iterdir()):
            raise ImportFailed(f"{self.out} is not empty: import into a new directory")
        self.out.mkdir(parents=True, exist_ok=True)
        self.writer = LakeWriter(self.out)
        self.rejects = Rejects(self.out / REJECTS)
        self.files: dict[str, dict] = {}
        self.delay_ms = int(settings.environment().services.availability_delay_s * 1000)

    def _append(self, topic: str, event) -> None:
        buffer = self.writer.buffers[topic]
        buffer.append(event)
        if len(buffer) >= FLUSH_ROWS:
            self.writer.flush(topic)

    def _each_row(self, family: str, source: Source, counted: dict) -> Iterator[tuple[int, dict]]:
        """(line, {column: value}) of every row of ``source``, with a progress bar;
        ``counted["read"]`` counts them."""

        with tqdm(desc=f"{family} ({source.path.name})", unit=" rows", mininterval=0.5,
                  disable=not self.progress) as bar:
            for lines, columns in source.batches():
                bar.total = source.rows
                names = list(columns)
                for i, line in enumerate(lines):
                    yield line, {n: columns[n][i] for n in names}
                counted["read"] += len(lines)
                bar.update(len(lines))

    def _rows(self, family: str, source: Source, convert: Callable[[dict], object],
              topic: str, repeated: frozenset[int] | set[int] = frozenset()) -> None:
        """Convert every row of ``source`` into an event of ``topic``, or a reject (the
        ``repeated`` lines: a repeat of an earlier line's transfer id)."""
        counted, imported = {"read": 0}, 0
        for line, row in self._each_row(family, source, counted):
            try:
                if line in repeated:
                    raise Reject("transfer_id: repeated (an earlier line has it)")
                event = convert(row)
            except Reject as why:
                self.rejects.add(source.path, line, str(why))
                continue
            self._append(topic, event)
            imported += 1
        self.writer.flush(topic)
        self._record(family, source, counted["read"], imported)

    def _record(self, family: str, source: Source, read: int, imported: int) -> None:
        rejected = self.rejects.counts.get(str(source.path), Counter())
        malformed = sum(n for reason, n in rejected.items() if reason.startswith("row:"))
        self.files[family] = {"file": source.path.name, "read": read + malformed,
                              "imported": imported, "rejected": dict(rejected)}

    def _source(self, path: Path, required, optional=()) -> Source:
        return Source(Path(path), self.renames, tuple(required), tuple(optional), self.rejects)

    # --- transfers --------------------------------------------------------------------------
    def transfers(self, path: Path) -> None:
        currencies = _iso4217()
        delay = self.delay_ms

        def convert(row: dict) -> s.TransferRequested:
            transfer_id = _transfer_id(row["transfer_id"])
            ts = parse_ms(row["ts"], "ts")
            currency = _choice(row["currency"], "eur").upper()
            if currency not in currencies:
                raise Reject("currency: not an ISO 4217 currency code")
            return s.TransferRequested(
                id=f"{transfer_id}.r", ts=ts, transfer_id=transfer_id,
                sender=_account(row["sender"], "sender"),
                recipient=_account(row["recipient"], "recipient"),
                amount_cents=parse_cents(row["amount"]), currency=currency,
                payout_due_ts=ts + delay)

        source = self._source(path, ("transfer_id", "ts", "sender", "recipient", "amount"),
                              ("currency",))
        repeated = self._repeated_lines(replace(source, rejects=None, only=("transfer_id",)))
        self._rows("transfers", source, convert, "transfer-requests", repeated)

    def _repeated_lines(self, ids: Source) -> set[int]:
        """The lines whose transfer id an earlier line already has: a first pass over the
        transfer id column alone, grouped by DuckDB (out of core); memory follows the repeats."""
        with _duckdb(self.out) as con:
            con.execute("CREATE TABLE ids (line BIGINT, transfer_id VARCHAR)")
            for lines, columns in ids.batches():
                con.register("batch", pa.table({
                    "line": pa.array(lines, pa.int64()),
                    "transfer_id": pa.array([None if v is None else str(v).strip()
                                             for v in columns["transfer_id"]], pa.string())}))
                con.execute("INSERT INTO ids SELECT * FROM batch")
                con.unregister("batch")
            return {line for (line,) in con.execute(
                "SELECT line FROM ids WHERE transfer_id <> '' QUALIFY row_number() OVER "
                "(PARTITION BY transfer_id ORDER BY line) > 1").fetchall()}

    # --- labels --------------------------------------------------------------------------------
    def labels(self, path: Path) -> None:
        """Validate the labels' own fields while streaming them into DuckDB, then join them to
        the transfers written (out of core) and write the Labels in file order."""
        source = self._source(path, ("transfer_id", "kind", "known_at"), ("party", "is_fraud"))
        schema = pa.schema([("line", pa.int64()), ("transfer_id", pa.string()),
                            ("kind", pa.string()), ("is_fraud", pa.bool_()),
                            ("known_at", pa.int64()), ("party", pa.string())])
        counted, imported = {"read": 0}, 0
        with _duckdb(self.out) as con:
            con.register("empty_staged", schema.empty_table())
            con.execute("CREATE TABLE staged AS SELECT * FROM empty_staged")

            def stage(rows: list[tuple]) -> None:
                con.register("batch", pa.Table.from_arrays(
                    [pa.array(col, f.type) for col, f in zip(zip(*rows), schema)], schema=schema))
                con.execute("INSERT INTO staged SELECT * FROM batch")
                con.unregister("batch")
                rows.clear()

            staged: list[tuple] = []
            for line, row in self._each_row("labels", source, counted):
                try:
                    staged.append((line, *_label_fields(row)))
                except Reject as why:
                    self.rejects.add(source.path, line, str(why))
                if len(staged) >= BATCH_ROWS:
                    stage(staged)
            if staged:
                stage(staged)
            # the labels are the join's build side: memory follows them, not the transfers
            joined = con.sql(f"""
                SELECT l.*, t.ts, t.sender, t.recipient
                FROM staged l LEFT JOIN (SELECT transfer_id, ts, sender, recipient
                                         FROM {_transfers(self.out)}) t USING (transfer_id)
                ORDER BY l.line""")
            for batch in joined.to_arrow_reader(BATCH_ROWS):
                for row in batch.to_pylist():
                    try:
                        label = _label(row)
                    except Reject as why:
                        self.rejects.add(source.path, row["line"], str(why))
                        continue
                    self._append("labels", label)
                    imported += 1
        self.writer.flush("labels")
        self._record("labels", source, counted["read"], imported)

    # --- sign-ups ---------------------------------------------------------------------------------
    def accounts(self, path: Path) -> None:
        def convert(row: dict) -> s.AccountEvent:
            account = _account(row["account"], "account")
            return s.AccountEvent(id=f"signup.{account}", ts=parse_ms(row["signup_ts"], "signup_ts"),
                                  account=account, kind="signup")

        self._rows("accounts", self._source(path, ("account", "signup_ts")), convert,
                   "account-events")

    def first_appearances(self) -> None:
        """Every account's first transfer, sent or received, as its sign-up."""
        imported = 0
        with _duckdb(self.out) as con:
            result = con.sql(f"""
                SELECT account, min(ts) AS ts FROM (
                    SELECT sender AS account, ts FROM {_transfers(self.out)}
                    UNION ALL SELECT recipient, ts FROM {_transfers(self.out)})
                GROUP BY account ORDER BY ts, account""")
            for batch in result.to_arrow_reader(BATCH_ROWS):
                for account, ts in zip(batch.column("account").to_pylist(),
                                       batch.column("ts").to_pylist()):
                    self._append("account-events", s.AccountEvent(
                        id=f"signup.{account}", ts=ts, account=account, kind="signup"))
                    imported += 1
        self.writer.flush("account-events")
        self.files["accounts"] = {"derived": "first_appearance", "imported": imported}

    # --- the end -------------------------------------------------------------------------------------
    def finish(self, accounts_declared: bool, seconds: float) -> dict:
        """Write the manifest (after the writer and the rejects are closed)."""
        families = dict.fromkeys(FAMILIES, False)
        families["transfers"] = self.files["transfers"]["imported"] > 0
        families["labels"] = self.files.get("labels", {}).get("imported", 0) > 0
        accounts = self.files.get("accounts", {}).get("imported", 0) > 0
        # True: declared sign-ups (an accounts file); "first_appearance": derived
        families["accounts"] = (True if accounts_declared else "first_appearance") if accounts \
            else False
        manifest = {
            "format": 1, "origin": "vigie import",
            "imported_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "families": families, "files": self.files,
            "availability_delay_ms": self.delay_ms, "seconds": round(seconds, 2),
            # which key the ids were hashed with (never the key): the live system's, or not
            "hash_key": "demo key" if settings.load().hash_key_is_demo
                        else "VIGIE_HASH_KEY",
        }
        (self.out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        return manifest


def _label_fields(row: dict) -> tuple:
    """(transfer_id, kind, is_fraud, known_at, party) of one label row, or Reject."""
    transfer_id = _transfer_id(row["transfer_id"])
    name = _choice(_present(row["kind"], "kind"), "")
    if name not in LABEL_KINDS:
        raise Reject("kind: unknown label kind")
    kind, is_fraud = LABEL_KINDS[name]
    if is_fraud is None:
        is_fraud = _bool(row["is_fraud"], "is_fraud")
    party = _choice(row["party"], "unknown")
    if party not in PARTIES:
        raise Reject("party: not sender, recipient or unknown")
    return transfer_id, kind, is_fraud, parse_ms(row["known_at"], "known_at"), party


def _label(row: dict) -> s.Label:
    """A staged label joined to its transfer (``ts``, ``sender``, ``recipient``: hashed)."""
    if row["ts"] is None:
        raise Reject("transfer_id: no such transfer imported")
    if row["known_at"] < row["ts"]:
        raise Reject("known_at: before the transfer")
    key = "|".join(str(row[k]) for k in ("transfer_id", "kind", "is_fraud", "known_at", "party"))
    return s.Label(
        id="l." + hashlib.sha256(key.encode()).hexdigest()[:32], ts=row["ts"], kind=row["kind"],
        account=row["recipient"] if row["party"] == "recipient" else row["sender"],
        transfer_id=row["transfer_id"], is_fraud=row["is_fraud"], known_at=row["known_at"],
        party=row["party"], sender=row["sender"], recipient=row["recipient"])


def _transfers(out: Path) -> str:
    """The transfers written so far, as a DuckDB relation (typed and empty before any)."""
    if any((out / "transfer-requests").glob("hour=*/*.parquet")):
        files = str(out / "transfer-requests" / "hour=*" / "*.parquet").replace("'", "''")
        return f"read_parquet('{files}')"
    return ("(SELECT NULL::VARCHAR AS transfer_id, NULL::BIGINT AS ts, NULL::VARCHAR AS sender, "
            "NULL::VARCHAR AS recipient WHERE false)")


class _duckdb:
    """A DuckDB connection that spills to a scratch folder under ``out``, removed on exit."""

    def __init__(self, out: Path):
        self.out = out

    def __enter__(self):

        self.tmp = tempfile.mkdtemp(prefix=".import-", dir=self.out)
        self.con = duckdb.connect(str(Path(self.tmp) / "scratch.duckdb"))
        self.con.execute(f"SET temp_directory='{self.tmp}'")
        self.con.execute("SET memory_limit='256MB'")
        self.con.execute("SET threads=2")
        self.con.execute("SET preserve_insertion_order=false")
        return self.con

    def __exit__(self, *exc):
        self.con.close()
        shutil.rmtree(self.tmp, ignore_errors=True)



def parse_map(pairs) -> dict[str, str]:
    """``["tx_time=ts", …]`` -> ``{"tx_time": "ts", …}``."""
    renames = {}
    for pair in pairs:
        source, sep, target = pair.partition("=")
        if not sep or not source or not target:
            raise ImportFailed(f"--map {pair!r}: expected SOURCE=TARGET")
        renames[source] = target
    return renames


def import_history(transfers: Path, out: Path, labels: Optional[Path] = None,
                   accounts: Optional[Path] = None, renames: Optional[dict] = None,
                   progress: bool = False) -> dict:
    """Import one history into ``out`` (a new directory); returns the manifest."""
    started = time.perf_counter()
    job = Importer(Path(out), renames or {}, progress)
    try:
        job.transfers(transfers)
        if labels is not None:
            job.labels(labels)
        if accounts is not None:
            job.accounts(accounts)
        else:
            job.first_appearances()
    finally:
        job.writer.close()
        job.rejects.close()
    return job.finish(accounts is not None, time.perf_counter() - started)


def summary(manifest: dict) -> str:
    """The counts a person reads after an import."""
    lines = []
    for family, info in manifest["files"].items():
        if "derived" in info:
            lines.append(f"{family}: {info['imported']:,} sign-ups from first appearance")
            continue
        rejected = sum(info["rejected"].values())
        lines.append(f"{family} ({info['file']}): read {info['read']:,}, imported "
                     f"{info['imported']:,}, rejected {rejected:,}")
        for reason, n in sorted(info["rejected"].items(), key=lambda kv: -kv[1]):
            lines.append(f"    {n:>9,}  {reason}")
    families = manifest["families"]
    present = ", ".join(f"{f}={v}" for f, v in families.items() if v) or "none"
    lines.append(f"families: {present} ({manifest['seconds']:.1f}s)")
    return "\n".join(lines)
