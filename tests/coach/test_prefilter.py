"""A regex's required literals are a necessary condition: never skip a text it matches."""

from __future__ import annotations

import re

import pytest
import spacy
from hypothesis import given, settings
from hypothesis import strategies as st

from coach.engine import _gate
from coach.matcher import TokenTest, _capitals, _flag, _flag_anchored, _other_capitals
from coach.prefilter import required_literals

PATTERNS = [
    r"!{3,}",
    r"\?{3,}",
    r"(\?+!+|!+\?+){2,}[?!]*",
    r"\b100\s*(%|percent|per cent)",
    r"\b(absolutely|definitely|certainly)\s+not\b",
    r"\b(no way|not a chance|no chance)\b",
    r"\b(i|we) (can't|cannot|could not) (say|tell you)\b",
    r"^\s*(ne|nikakor|nikoli)\s*[.!]*\s*$",
    r"no{2,}",
    r"wa+y",
    r"so+ !+",
]
ALPHABET = "abcdefghilnorstuwy !?%01 .,'"


def allowed(pattern: str, text: str) -> bool:
    sets = required_literals(pattern)
    lowered = text.lower()
    return sets is None or all(any(lit in lowered for lit in options) for options in sets)


@pytest.mark.parametrize("pattern", PATTERNS)
@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=ALPHABET, max_size=40))
def test_no_match_is_filtered_out(pattern: str, text: str) -> None:
    if re.search(pattern, text, re.IGNORECASE):
        assert allowed(pattern, text)


@pytest.mark.parametrize(
    "pattern, text",
    [
        (r"!{3,}", "Thanks!"),
        (r"\b(absolutely|definitely|certainly)\s+not\b", "Let me check that for you."),
        (r"\b100\s*(%|percent|per cent)", "Order 100 is on its way."),
        # Both marks, but never one right after the other.
        (r"(\?+!+|!+\?+){2,}[?!]*", "Why? Because it broke! Now what?"),
    ],
)
def test_texts_without_the_words_are_skipped(pattern: str, text: str) -> None:
    assert not allowed(pattern, text)


@pytest.mark.parametrize(
    "pattern, text",
    [
        (r"!{3,}", "WHERE IS IT!!!!"),
        (r"(\?+!+|!+\?+){2,}[?!]*", "what?!?!"),
        (r"\b100\s*(%|percent|per cent)", "I am 100 % sure"),
        (r"\b(i|we) (can't|cannot|could not) (say|tell you)\b", "Sorry, we CANNOT say."),
        (r"no{2,}", "Nooo"),
    ],
)
def test_texts_the_regex_matches_pass_the_filter(pattern: str, text: str) -> None:
    assert re.search(pattern, text, re.IGNORECASE)
    assert allowed(pattern, text)


# ---------------------------------------------------------------- capitals gate

_WORDS = st.sampled_from(
    ["WHY", "IS", "MY", "ORDER", "NOT", "HERE", "DON'T", "I", "A", "UPS", "@UPSHelp", "OK",
     "ČEKAM", "ЗАШТО", "НИЈЕ", "já", "ne", "Order", "#1182", "!!!", "-", "U.S.", "ЂЕ",
     "ŁA", "İK", "ŐR", "ЁЖ", "ǇA", "A中", "ΑΒΓ", "ñ"]
)
_GLUE = st.sampled_from([" ", "  ", "", "\n", ", ", "-", "'"])


@settings(max_examples=400, deadline=None)
@given(parts=st.lists(st.tuples(_WORDS, _GLUE), max_size=10))
def test_the_capitals_gate_never_hides_a_shout(parts: list[tuple[str, str]]) -> None:
    text = "".join(w + g for w, g in parts)
    doc = spacy.blank("sr").tokenizer(text)
    upper = [_flag(t, "IS_UPPER") for t in doc]
    for run in (1, 2, 3):
        shouted = any(all(upper[i : i + run]) for i in range(len(upper) - run + 1))
        if shouted:
            assert _capitals(run).search(text) or _other_capitals(text), (
                run, [t.text for t in doc])
            # What the engine asks before it looks at the tokens.
            shout = _flag_anchored([TokenTest(flags=(("IS_UPPER", True),))] * run)
            assert shout.may_shout(text), (run, [t.text for t in doc])


# ---------------------------------------------------------------- regex gate

_GATE_STRINGS = st.lists(
    st.sampled_from(["!!!", "?!", "!?", "ne znam", "don't", "100", "Ž", "šta"]),
    min_size=1,
    max_size=12,
    unique=True,
)


@settings(max_examples=300, deadline=None)
@given(needed=_GATE_STRINGS, text=st.text(alphabet="!?. aeDNOTnotzmšŠŽž'01", max_size=40))
def test_the_regex_gate_passes_every_text_with_one_of_its_strings(
    needed: list[str], text: str
) -> None:
    lowered = [s.lower() for s in needed]
    gate = _gate(lowered)
    assert gate(text) == any(s in text.lower() for s in lowered)
