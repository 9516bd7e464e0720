"""One decision from the model, the rules and the lists.

Precedence, strongest first:
1. a block-list hit (account, device or card) blocks, whatever else says;
2. an allow-list hit approves: it overrides rules and model, but never a block-list hit;
3. rules: among the rules hit, the strictest action wins (block > hold > warn; at equal
   action the first listed, i.e. the highest-priority rule, is named);
4. the model's threshold action.
Rules only ever add friction (their actions are warn, hold or block), so between 3 and 4 the
stricter of the two applies: a "warn" rule must not turn the model's "block" into a warning.
When they agree, the rule is named as the cause, being the more explicit reason.

>>> decide(0.2, "approve", [("burst", "hold")], [])
('hold', 'rule:burst')
>>> decide(0.99, "block", [("burst", "warn")], [])
('block', 'model:block (score 0.9900)')
>>> decide(0.2, "approve", [("burst", "hold")], ["allow:account:a_01"])
('approve', 'list:allow:account:a_01')
"""
from __future__ import annotations

from collections.abc import Iterable

SEVERITY = {"approve": 0, "warn": 1, "hold": 2, "block": 3}
# Before a first promotion (or with no promoted model a worker can load) rules and lists decide
# alone, and a decision says so in its model_version. Where they say nothing, the model's place
# is taken by a hold: never approve blind (an analyst's time is cheaper than a paid-out fraud).
RULES_ONLY = "rules-only"
NO_MODEL_ACTION = "hold"


def decide(score: float, model_action: str, rule_hits: Iterable[tuple[str, str]],
           list_hits: Iterable[str]) -> tuple[str, str]:
    """(action, why). ``rule_hits``: (rule name, its action) pairs, highest priority first
    (``RuleSet.with_actions``); ``list_hits``: ``"<list>:<kind>:<hash>"`` (``ListStore.hits``).
    ``why`` names the deciding source: ``list:block:…``, ``list:allow:…``, ``rule:<name>`` or
    ``model:<action>``."""
    if model_action not in SEVERITY:
        raise ValueError(f"unknown model action {model_action!r}")
    list_hits = list(list_hits)
    for prefix, action in (("block:", "block"), ("allow:", "approve")):
        hit = next((h for h in list_hits if h.startswith(prefix)), None)
        if hit is not None:
            return action, f"list:{hit}"
    strictest = None
    for name, action in rule_hits:
        if action not in SEVERITY:
            raise ValueError(f"rule {name!r} has unknown action {action!r}")
        if strictest is None or SEVERITY[action] > SEVERITY[strictest[1]]:
            strictest = (name, action)
    if strictest is not None and SEVERITY[strictest[1]] >= SEVERITY[model_action]:
        return strictest[1], f"rule:{strictest[0]}"
    return model_action, f"model:{model_action} (score {score:.4f})"
