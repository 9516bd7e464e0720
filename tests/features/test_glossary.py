"""The glossary explains every feature the models use (FEATURE_NAMES: the worker refuses a model
needing any other, models.registry.missing_features), in English and French, each in its own
words; and every in-chat warning code has a text."""
from __future__ import annotations

import pytest

from features import glossary
from features.vector import FEATURE_NAMES, WARNING_CODES


@pytest.mark.parametrize("lang", glossary.LANGS)
def test_every_feature_has_its_own_sentence(lang):
    sentences = {name: glossary.describe(name, lang) for name in FEATURE_NAMES}
    assert all(s[0].isupper() and s.endswith(".") and "{" not in s for s in sentences.values())
    assert len(set(sentences.values())) == len(FEATURE_NAMES), "two features read the same"


def test_an_unknown_name_is_refused_not_guessed():
    with pytest.raises(KeyError):
        glossary.describe("sender_favourite_colour_1h")
    assert glossary.describe_or_name("not_a_feature") == "not_a_feature"


@pytest.mark.parametrize("lang", glossary.LANGS)
def test_every_warning_code_has_a_text(lang):
    codes = set(WARNING_CODES.values()) | {"unusual_transfer"}
    assert codes == set(glossary.WARNINGS)
    assert glossary.warning_text("no-such-code", lang) == glossary.warning_text("unusual_transfer", lang)
    assert len({glossary.warning_text(c, lang) for c in codes}) == len(codes)
