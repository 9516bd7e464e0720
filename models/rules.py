"""Rules: named boolean SQL expressions over feature columns, one DuckDB engine for live and
backtest.

A rule is data; changes arrive as events (``RuleSet.apply_change``: upsert, enable, disable or
delete by name, each a new version; last-writer-wins on event time, so a replayed change changes
nothing). ``RuleSet.hit_matrix`` runs every rule in one ``SELECT`` of a locked in-memory DuckDB,
live and in backtests. Expressions are checked on upsert against DuckDB's parse tree: feature
columns, numbers, comparisons, boolean logic and a few numeric functions; a missing feature
makes a rule not hit. Details: docs/models.md, "Rules engine".

>>> rules = RuleSet(["amount_cents", "sender_count_1h"])
>>> rules.apply_change({"op": "upsert", "name": "burst", "ts": 1, "action": "hold",
...                     "expression": "amount_cents > 50000 AND sender_count_1h >= 3"}).version
1
>>> rules.evaluate(pd.DataFrame({"amount_cents": [90000, 90000], "sender_count_1h": [4, None]}))
[['burst'], []]
>>> rules.validate("amount_cents > (SELECT 1)")  # doctest: +IGNORE_EXCEPTION_DETAIL
Traceback (most recent call last):
RuleError: 'SELECT' is not allowed in a rule expression
"""
from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

ACTIONS = ("warn", "hold", "block")
NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
MAX_EXPRESSION = 2000
# Belt and braces before the parse-tree check: statement separators, comments, and words that
# have no business in a scalar condition.
DENIED = re.compile(r";|--|/\*|\b(select|from|with|union|attach|detach|copy|export|import|install|"
                    r"load|pragma|set|reset|call|create|drop|insert|update|delete|alter|"
                    r"read_\w+|getenv|query\w*)\b", re.IGNORECASE)
CLASSES = {"COLUMN_REF", "CONSTANT", "COMPARISON", "CONJUNCTION", "BETWEEN", "CASE", "OPERATOR",
           "FUNCTION", "CAST", "TYPE"}
OPERATORS = {"OPERATOR_NOT", "OPERATOR_IS_NULL", "OPERATOR_IS_NOT_NULL", "COMPARE_IN",
             "COMPARE_NOT_IN", "OPERATOR_COALESCE"}
FUNCTIONS = {"+", "-", "*", "/", "//", "%", "^", "**", "abs", "sign", "least", "greatest",
             "coalesce", "ifnull", "nullif", "ln", "log", "log2", "log10", "sqrt", "exp", "pow",
             "power", "round", "floor", "ceil", "ceiling", "isnan", "isfinite", "isinf"}
LITERALS = {"INTEGER", "NUMERIC", "BOOLEAN", "NULL_LITERAL"}
TYPES = {"DOUBLE", "FLOAT", "REAL", "INTEGER", "INT", "BIGINT", "SMALLINT", "BOOLEAN", "BOOL"}


class RuleError(ValueError):
    """A rule change that is refused; the rule set is left as it was."""


@dataclass(frozen=True)
class Rule:
    name: str
    expression: str
    action: str
    priority: int = 0  # higher first: the order hits are listed in, and ties broken by
    enabled: bool = True
    version: int = 1
    author: str = ""
    created_ts: int = 0  # event time (ms) of the first version
    updated_ts: int = 0  # event time (ms) of the last change
    deleted: bool = False  # a tombstone: keeps the version count and refuses stale changes

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> "Rule":
        return cls(**data)


def _engine() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:", config={
        "enable_external_access": False, "autoinstall_known_extensions": False,
        "autoload_known_extensions": False, "threads": 1})
    con.execute("SET lock_configuration = true")
    return con


def _bool(value) -> bool:
    if isinstance(value, str):  # console changes carry their fields as strings
        if value.lower() not in ("true", "false", "1", "0"):
            raise RuleError(f"not a boolean: {value!r}")
        return value.lower() in ("true", "1")
    return bool(value)


def _int(value, field: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise RuleError(f"{field} must be an integer, got {value!r}") from None


class RuleSet:
    def __init__(self, columns: Iterable[str], rules: Iterable[Rule | Mapping] = ()):
        """``columns``: the feature names expressions may use (the model's or the feature
        registry's ordered names)."""
        self.columns = tuple(columns)
        self._con = _engine()
        self._empty = pd.DataFrame({c: pd.Series(dtype="float64") for c in self.columns})
        self._rules: dict[str, Rule] = {}
        self._uses: dict[str, tuple[str, ...]] = {}  # expression -> the columns it reads
        # Stored rules that no longer validate (a feature was renamed since): kept in the state,
        # left out of evaluation until fixed, so a worker still starts. Say so where you load.
        self.broken: dict[str, str] = {}
        for rule in rules:
            rule = rule if isinstance(rule, Rule) else Rule.from_dict(rule)
            self._rules[rule.name] = rule
            try:
                if not rule.deleted:
                    self.validate(rule.expression)
            except RuleError as exc:
                self.broken[rule.name] = str(exc)

    # --- state -------------------------------------------------------------------------
    def to_json(self) -> list[dict]:
        return [r.to_dict() for r in sorted(self._rules.values(), key=lambda r: r.name)]

    @classmethod
    def from_json(cls, columns: Iterable[str], data: str | list) -> "RuleSet":
        return cls(columns, json.loads(data) if isinstance(data, str) else data)

    @property
    def rules(self) -> list[Rule]:
        """Live (not deleted, not broken) rules, highest priority first."""
        return sorted((r for r in self._rules.values() if not r.deleted and r.name not in self.broken),
                      key=lambda r: (-r.priority, r.name))

    def get(self, name: str) -> Rule | None:
        rule = self._rules.get(name)
        return None if rule is None or rule.deleted else rule

    def with_actions(self, names: Iterable[str]) -> list[tuple[str, str]]:
        """(name, action) for rule names, as ``policy.decide`` takes them."""
        return [(n, self._rules[n].action) for n in names]

    # --- validation ----------------------------------------------------------------------
    def validate(self, expression: str) -> tuple[str, ...]:
        """Refuse (RuleError) anything but a boolean scalar expression over the known columns;
        return the columns it reads."""
        if not isinstance(expression, str) or not expression.strip():
            raise RuleError("a rule needs an expression")
        if expression in self._uses:
            return self._uses[expression]
        if len(expression) > MAX_EXPRESSION:
            raise RuleError(f"expression longer than {MAX_EXPRESSION} characters")
        denied = DENIED.search(expression)
        if denied:
            raise RuleError(f"{denied.group(0)!r} is not allowed in a rule expression")
        query = f"SELECT ({expression}) AS hit FROM batch"
        tree = json.loads(self._con.execute("SELECT json_serialize_sql(?)", [query]).fetchall()[0][0])
        if tree.get("error"):
            raise RuleError(f"not a valid expression: {tree.get('error_message')}")
        used = self._check_tree(tree)
        self._con.register("batch", self._empty)
        try:  # the binder: types, function arguments
            result = self._con.execute(query)
            types = result.description
            result.fetchall()  # DuckDB wants every result finished before the next statement
        except duckdb.Error as exc:
            raise RuleError(f"expression refused by DuckDB: {exc}".splitlines()[0]) from None
        finally:
            self._con.unregister("batch")
        if types[0][1] not in ("BOOLEAN", "bool"):
            raise RuleError(f"a rule must be a condition (true/false), this one is {types[0][1]}")
        self._uses[expression] = used
        return used

    def _check_tree(self, tree: dict) -> tuple[str, ...]:
        statements = tree.get("statements", [])
        node = statements[0]["node"] if len(statements) == 1 else {}
        src = node.get("from_table") or {}
        if (node.get("type") != "SELECT_NODE" or len(node.get("select_list", [])) != 1
                or src.get("type") != "BASE_TABLE" or src.get("table_name") != "batch"
                or node.get("where_clause") or node.get("having") or node.get("qualify")
                or node.get("group_expressions") or node.get("modifiers")
                or node.get("cte_map", {}).get("map")):
            raise RuleError("a rule must be a single expression")
        used: list[str] = []
        self._walk(node["select_list"][0], used)
        return tuple(dict.fromkeys(used))

    def _walk(self, node, used: list[str]) -> None:
        if isinstance(node, list):
            for item in node:
                self._walk(item, used)
            return
        if not isinstance(node, dict):
            return
        kind = node.get("class")
        if kind is not None:
            self._check_node(kind, node, used)
        for value in node.values():
            self._walk(value, used)

    def _check_node(self, kind: str, node: dict, used: list[str]) -> None:
        if kind not in CLASSES:
            raise RuleError(f"{kind.lower().replace('_', ' ')} is not allowed in a rule")
        if kind == "OPERATOR" and node["type"] not in OPERATORS:
            raise RuleError(f"operator {node['type']} is not allowed in a rule")
        if kind == "FUNCTION" and (node.get("function_name", "").lower() not in FUNCTIONS
                                   or node.get("schema") or node.get("catalog")
                                   or node.get("filter") or node.get("distinct")
                                   or node.get("order_bys", {}).get("orders")):
            raise RuleError(f"function {node.get('function_name')!r} is not allowed in a rule "
                            f"(allowed: {', '.join(sorted(f for f in FUNCTIONS if f.isalpha()))} "
                            f"and arithmetic)")
        if kind == "CONSTANT" and node["literal"]["kind"] not in LITERALS:
            raise RuleError(f"only numbers and booleans may appear as values, not "
                            f"{node['literal']['kind'].lower()} {node['literal']['text']!r}")
        if kind == "TYPE" and node.get("type_name", "").upper() not in TYPES:
            raise RuleError(f"cast to {node.get('type_name')} is not allowed in a rule")
        if kind == "COLUMN_REF":
            names = node["column_names"]
            if len(names) != 1 or names[0] not in self.columns:
                name = ".".join(names)
                near = difflib.get_close_matches(name, self.columns, n=3)
                raise RuleError(f"unknown feature {name!r}"
                                + (f" (did you mean {', '.join(near)}?)" if near else ""))
            used.append(names[0])

    # --- changes -------------------------------------------------------------------------
    def apply_change(self, change: Mapping) -> Rule | None:
        """Apply one change event; return the rule as it now stands (None if it never existed).

        ``change``: ``op`` (upsert | enable | disable | delete), ``name``, ``ts`` (event time,
        ms), ``author``; for upsert ``expression``, ``action``, ``priority``, ``enabled`` (a new
        rule needs the first two; an existing one keeps what the change leaves out). Values may
        be strings, as in an analyst action's params. Raises RuleError, and changes nothing, if
        the change is invalid."""
        op, name = change.get("op"), change.get("name")
        if op not in ("upsert", "enable", "disable", "delete"):
            raise RuleError(f"unknown rule change {op!r}")
        if not isinstance(name, str) or not NAME.match(name):
            raise RuleError(f"a rule name is 1-64 characters of a-z, 0-9 and _, "
                            f"starting with a letter; got {name!r}")
        ts = _int(change.get("ts"), "ts")
        author = str(change.get("author", ""))
        current = self._rules.get(name)
        if current is not None and ts <= current.updated_ts:
            return self.get(name)  # already applied, or older than what we have
        if op == "upsert":
            new = self._upserted(current, change, ts, author)
        elif current is None or current.deleted:
            raise RuleError(f"no rule named {name!r}")
        elif op == "delete":
            new = replace(current, deleted=True, enabled=False)
        else:
            new = replace(current, enabled=(op == "enable"))
        if current is not None and new == current:
            return self.get(name)  # nothing changed: no new version
        if current is not None:
            new = replace(new, version=current.version + 1, author=author, updated_ts=ts)
        self._rules[name] = new
        if op in ("upsert", "delete"):  # a validated expression, or none: no longer broken
            self.broken.pop(name, None)
        return self.get(name) or new

    def _upserted(self, current: Rule | None, change: Mapping, ts: int, author: str) -> Rule:
        live = current if current is not None and not current.deleted else None
        expression = change.get("expression", live.expression if live else None)
        action = change.get("action", live.action if live else None)
        if action not in ACTIONS:
            raise RuleError(f"a rule's action is one of {', '.join(ACTIONS)}; got {action!r}")
        self.validate(expression)
        fields = {"expression": expression.strip(), "action": action,
                  "priority": _int(change.get("priority", live.priority if live else 0), "priority"),
                  "enabled": _bool(change.get("enabled", live.enabled if live else True)),
                  "deleted": False}
        if current is None:
            return Rule(name=change["name"], version=1, author=author, created_ts=ts,
                        updated_ts=ts, **fields)
        return replace(current, **fields)

    # --- evaluation ----------------------------------------------------------------------
    def hit_matrix(self, batch: pd.DataFrame, include_disabled: bool = False,
                   rules: list[Rule] | None = None) -> tuple[list[Rule], np.ndarray]:
        """(rules, hits): hits[i, j] is True when row i of ``batch`` meets rules[j]. The same
        code for a live micro-batch and a backtest table. A column the batch lacks is NULL."""
        if rules is None:
            rules = [r for r in self.rules if include_disabled or r.enabled]
        if not rules or not len(batch):
            return rules, np.zeros((len(batch), len(rules)), dtype=bool)
        needed = list(dict.fromkeys(c for r in rules for c in self.validate(r.expression)))
        # float64 everywhere, as features are (an int column in one batch and a float one in the
        # next must not give two answers); NaN becomes NULL; Arrow scans far cheaper than pandas
        values = batch.reindex(columns=needed).to_numpy(dtype=np.float64, na_value=np.nan)
        frame = pa.table({c: pa.array(values[:, j], from_pandas=True) for j, c in enumerate(needed)})
        # TRY: a value that breaks one rule (1 // 0, an out-of-range cast) makes that rule
        # unknown for that row instead of failing the batch
        select = ", ".join(f"COALESCE(TRY({r.expression}), false) AS r{j}"
                           for j, r in enumerate(rules))
        self._con.register("batch", frame)
        try:
            columns = self._con.execute(f"SELECT {select} FROM batch").fetchnumpy()
        finally:
            self._con.unregister("batch")
        return rules, np.column_stack([np.asarray(columns[f"r{j}"], dtype=bool)
                                       for j in range(len(rules))])

    def evaluate(self, batch: pd.DataFrame) -> list[list[str]]:
        """For each row, the names of the enabled rules it meets, highest priority first."""
        rules, hits = self.hit_matrix(batch)
        return [[rules[j].name for j in np.flatnonzero(row)] for row in hits]
