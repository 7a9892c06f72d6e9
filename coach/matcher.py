"""Token patterns compiled for speed.

spaCy's Matcher tries every pattern at every token, so its cost grows with
the number of rules. Here each pattern is indexed by one *anchor*: a required
token whose possible words are known. Checking a text looks each token's
word up in that index and tries only the patterns anchored on it, so the
cost follows the number of tokens, not the number of rules.
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Callable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

from spacy import attrs
from spacy.tokens import Doc

#: Bound on how many tokens ``*`` and ``+`` may consume.
MAX_REPEAT = 8

_LENGTH_OPS: dict[str, Callable[[int, int], bool]] = {
    ">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt,
    "==": operator.eq, "!=": operator.ne,
}  # fmt: skip


#: Capital letters of the gate: Latin, with the South Slavic letters, and Cyrillic.
_UPPER = "A-ZÀ-ÖØ-ÞČĆŠŽĐА-ЯЂЈЉЊЋЏ"
_LOWER = "a-zß-öø-ÿčćšžđа-яђјљњћџ"
_KNOWN_CAPITALS = frozenset(ch for ch in map(chr, range(0x500)) if re.match(f"[{_UPPER}]", ch))


@functools.cache
def _capitals(n: int) -> re.Pattern[str]:
    """Matches where ``2 * n`` capitals follow each other with no small letter
    between them, which ``n`` adjacent ``IS_UPPER`` tokens written in these
    capitals always contain: a shouted word has two letters or more (see
    :func:`_flag`), so "@UPSHelp" is no shout. Texts with other capitals
    ("ŁA", "ǇA") or uncased letters ("A中") skip the gate: see
    :func:`_other_capitals`."""
    return re.compile(f"[{_UPPER}](?:[^{_LOWER}]*?[{_UPPER}]){{{2 * n - 1}}}")


#: A word character beyond ASCII, not a digit and none of the gate's letters:
#: the only characters :func:`_other_capitals` has to look at.
_UNKNOWN_LETTER = re.compile(f"[^\\W\\d_\\x00-\\x7f{_UPPER}{_LOWER}]")


def _other_capitals(text: str) -> bool:
    """Whether ``text`` has a letter that can be in a shouted word but is not
    one of the gate's capitals (rare: most texts are ASCII or use them)."""
    if text.isascii():
        return False
    return any(
        ch.isalpha() and not ch.islower() and ch not in _KNOWN_CAPITALS
        for ch in {m.group() for m in _UNKNOWN_LETTER.finditer(text)}
    )


#: The case shape of UTF-8 text: an ASCII capital becomes "A", an ASCII small
#: letter "a", and any other character "A" (its first byte; the bytes that
#: continue a character go, as do digits, spaces and punctuation). A run of
#: capitals with no small letter between them shows as a run of "A" at least
#: as long, so a shape with no such run rules a shout out.
_SHAPE_TABLE = bytes(
    ord("A") if 65 <= b <= 90 or b >= 0xC0 else ord("a") if 97 <= b <= 122 else b
    for b in range(256)
)
_SHAPE_DELETE = bytes(b for b in range(256) if not (65 <= b <= 90 or 97 <= b <= 122 or b >= 0xC0))

#: An anchor: one word's hash, or two adjacent words' hashes.
AnchorKey = int | tuple[int, int]

#: Flags that can anchor a pattern with no known word, by spaCy attribute id.
FLAG_ATTRS: dict[str, int] = {
    "IS_UPPER": attrs.IS_UPPER,
    "IS_TITLE": attrs.IS_TITLE,
    "IS_DIGIT": attrs.IS_DIGIT,
    "LIKE_NUM": attrs.LIKE_NUM,
    "IS_PUNCT": attrs.IS_PUNCT,
}


SENTENCE_ENDS = frozenset({".", "!", "?", "…", "...", "?!", "!?"})


class TokenView:
    """A tokenized text: spaCy's Doc and each token's folded word."""

    __slots__ = ("doc", "keys", "strings", "text", "_flags")

    def __init__(self, doc: Doc, keys: Sequence[int], strings: Any, text: str) -> None:
        self.doc = doc
        #: Hash of each token's match form (``Doc.to_array(NORM)``).
        self.keys = keys
        self.strings = strings
        #: The text as tokenized (``Doc.text`` would rebuild it token by token).
        self.text = text
        self._flags: dict[str, list[int]] | None = None

    def word(self, i: int) -> str:
        """The match form of token ``i``."""
        return str(self.strings[self.keys[i]])

    def positions_with(self, flag: str) -> list[int]:
        """Indexes of the tokens that have ``flag``, computed once per text in C."""
        if self._flags is None:
            self._flags = {}
        found = self._flags.get(flag)
        if found is None:
            column = self.doc.to_array(FLAG_ATTRS[flag]).tolist() if len(self.doc) else []
            found = self._flags[flag] = [i for i, v in enumerate(column) if v]
        return found

    def __len__(self) -> int:
        return len(self.keys)

    def char_span(self, start: int, end: int) -> tuple[int, int]:
        first, last = self.doc[start], self.doc[end - 1]
        return first.idx, last.idx + len(last.text)

    def within_sentence(self, start: int, end: int) -> tuple[int, int]:
        """The tokens of a match ``start:end`` without the spaces at its ends, beginning
        after the last ".", "!" or "?" in it that has a word after it.

        Patterns take the words around a phrase up to a comma or the sentence's end, so
        that a suggestion replaces the whole clause; an optional punctuation mark meant
        for "Ne, to je nemoguće" would otherwise take "Hvala. To je nemoguće" whole, and
        applying the suggestion would delete the sentence before.
        """
        doc = self.doc
        while start < end and doc[start].is_space:
            start += 1
        while end > start and doc[end - 1].is_space:
            end -= 1
        word_after = False
        for i in range(end - 1, start - 1, -1):
            token = doc[i]
            if not token.is_punct:
                word_after = True
            elif word_after and token.text in SENTENCE_ENDS:
                return i + 1, end
        return start, end


@dataclass(frozen=True, slots=True)
class TokenTest:
    """One token of a pattern."""

    op: str = "1"
    key_in: frozenset[int] | None = None
    key_not_in: frozenset[int] = frozenset()
    key_regex: tuple[re.Pattern[str], ...] = ()
    text_in: frozenset[str] | None = None
    text_not_in: frozenset[str] = frozenset()
    text_regex: tuple[re.Pattern[str], ...] = ()
    flags: tuple[tuple[str, bool], ...] = ()
    length: tuple[tuple[str, int], ...] = ()

    def accepts(self, view: TokenView, i: int) -> bool:
        key = view.keys[i]
        if self.key_in is not None and key not in self.key_in:
            return False
        if key in self.key_not_in:
            return False
        for rx in self.key_regex:
            if not rx.search(view.word(i)):
                return False
        if (
            self.text_in is not None
            or self.text_not_in
            or self.text_regex
            or self.flags
            or self.length
        ):
            token = view.doc[i]
            text = token.text
            if self.text_in is not None and text not in self.text_in:
                return False
            if text in self.text_not_in:
                return False
            for rx in self.text_regex:
                if not rx.search(text):
                    return False
            for name, wanted in self.flags:
                if _flag(token, name) != wanted:
                    return False
            for op, n in self.length:
                if not _LENGTH_OPS[op](len(text), n):
                    return False
        return True


_SENTENCE_PUNCT = frozenset({".", "!", "?", "…", "...", "?!", "!!", "??"})


def _flag(token: Any, name: str) -> bool:
    if name == "IS_SENT_END":
        doc = token.doc
        if token.i == len(doc) - 1 or "\n" in token.whitespace_:
            return True
        following = doc[token.i + 1].text
        return following in _SENTENCE_PUNCT or following.startswith(("!", "?", "\n"))
    if name == "IS_SENT_START":
        if token.i == 0:
            return True
        previous = token.doc[token.i - 1]
        return (
            previous.text in _SENTENCE_PUNCT
            or "\n" in previous.whitespace_
            or previous.text.startswith("\n")
        )
    if name == "IS_UPPER":
        # spaCy calls "A" upper; a shouted word needs two letters or more.
        text = token.text
        return bool(token.is_upper) and sum(ch.isalpha() for ch in text) >= 2
    return bool(getattr(token, name.lower()))


@dataclass(frozen=True, slots=True)
class Pattern:
    """A compiled token pattern with its anchor."""

    tests: tuple[TokenTest, ...]
    anchor: int | None
    anchor_keys: frozenset[AnchorKey] = frozenset()
    pre_min: int = 0
    pre_max: int = 0
    #: The tokens before the anchor, nearest first, for matching backwards.
    before: tuple[TokenTest, ...] = ()
    #: With no word to anchor on, a required flag (``IS_UPPER``...) may.
    flag_anchor: str | None = None
    #: Anchored on two adjacent words (``anchor_keys`` holds pairs).
    pair_anchor: bool = False
    #: Word sets of the other required tokens: a text lacking any of them
    #: cannot match, whatever its anchor says (a cheap test before matching).
    required: tuple[frozenset[int], ...] = ()
    #: With an ``IS_UPPER`` anchor: what a text needs before the tokens are
    #: looked at (as many capitals together as tokens in a row).
    gate: re.Pattern[str] | None = None
    #: How many capitals the gate needs together.
    capitals: int = 0

    @property
    def word_anchored(self) -> bool:
        """Anchored on one word: no match without one of ``anchor_keys``."""
        return self.anchor is not None and self.flag_anchor is None and not self.pair_anchor

    def may_shout(self, text: str) -> bool:
        """Whether ``text`` has the capitals the ``IS_UPPER`` run of this
        pattern needs (always true without a gate)."""
        gate = self.gate
        if gate is None:
            return True
        # One pass in C over the bytes first; exact for ASCII text.
        shape = text.encode().translate(_SHAPE_TABLE, _SHAPE_DELETE)
        if b"A" * self.capitals not in shape:
            return False
        if text.isascii():
            return True
        return gate.search(text) is not None or _other_capitals(text)

    def possible_in(self, present: AbstractSet[int]) -> bool:
        for words in self.required:  # noqa: SIM110 - a plain loop beats all() over a generator
            if present.isdisjoint(words):
                return False
        return True

    def _extend(
        self, tests: tuple[TokenTest, ...], k: int, view: TokenView, pos: int, step: int
    ) -> int:
        """Match ``tests[k:]`` from token ``pos`` walking by ``step`` (+1 or -1).

        Returns the position just past the last token consumed (in walking
        direction), or -2 when there is no match. Repeats are greedy and back off.
        """
        if k == len(tests):
            return pos
        test = tests[k]
        op = test.op
        n = len(view)
        inside = 0 <= pos < n
        if op == "1":
            if inside and test.accepts(view, pos):
                return self._extend(tests, k + 1, view, pos + step, step)
            return -2
        if op == "!":
            if inside and not test.accepts(view, pos):
                return self._extend(tests, k + 1, view, pos + step, step)
            return -2
        if op == "?":
            if inside and test.accepts(view, pos):
                end = self._extend(tests, k + 1, view, pos + step, step)
                if end != -2:
                    return end
            return self._extend(tests, k + 1, view, pos, step)
        # "*" and "+": as many as possible, then back off.
        count = 0
        while (
            count < MAX_REPEAT
            and 0 <= pos + count * step < n
            and test.accepts(view, pos + count * step)
        ):
            count += 1
        least = 1 if op == "+" else 0
        for used in range(count, least - 1, -1):
            end = self._extend(tests, k + 1, view, pos + used * step, step)
            if end != -2:
                return end
        return -2

    def match_from(self, view: TokenView, start: int) -> int:
        """End of the longest match starting at ``start``, or -1."""
        end = self._extend(self.tests, 0, view, start, 1)
        return end if end > start else -1

    def matches_at_anchor(self, view: TokenView, i: int) -> Iterator[tuple[int, int]]:
        """The match whose anchor token is token ``i`` (its key is already known to fit)."""
        anchor = self.anchor
        assert anchor is not None
        if not self.tests[anchor].accepts(view, i):
            return
        end = self._extend(self.tests, anchor + 1, view, i + 1, 1)
        if end == -2:
            return
        before = self.before
        start = self._extend(before, 0, view, i - 1, -1) if before else i - 1
        if start == -2:
            return
        yield start + 1, end

    def find(
        self, view: TokenView, lo: int = 0, hi: int | None = None
    ) -> Iterator[tuple[int, int]]:
        """All matches starting in ``[lo, hi)``."""
        hi = len(view) if hi is None else min(hi, len(view))
        if self.anchor is not None and self.flag_anchor is not None:
            if not self.may_shout(view.text):
                return  # not enough capitals together: nothing is shouted
            positions = view.positions_with(self.flag_anchor)
            run = self.capitals // 2
            if run > 1 and self.flag_anchor == "IS_UPPER":
                # The anchor starts a run of upper-case tokens: only where
                # the next ones are upper case too.
                upper = set(positions)
                positions = [i for i in positions if all(i + j in upper for j in range(1, run))]
            for i in positions:
                if i >= hi + self.pre_max:
                    break
                if i >= lo:
                    for start, end in self.matches_at_anchor(view, i):
                        if lo <= start < hi:
                            yield start, end
            return
        if self.anchor is None:
            for start in range(max(0, lo), hi):
                end = self.match_from(view, start)
                if end > 0:
                    yield start, end
            return
        keys = view.keys
        anchors = self.anchor_keys
        first = max(0, lo)
        window = keys[first : min(len(keys), hi + self.pre_max)]
        if self.pair_anchor:
            pairs = zip(window, keys[first + 1 : first + 1 + len(window)], strict=False)
            positions = [first + j for j, pair in enumerate(pairs) if pair in anchors]
        else:
            positions = [first + j for j, key in enumerate(window) if key in anchors]
        for i in positions:
            for start, end in self.matches_at_anchor(view, i):
                if lo <= start < hi:
                    yield start, end


_SPAN = {"1": (1, 1), "!": (1, 1), "?": (0, 1), "*": (0, MAX_REPEAT), "+": (1, MAX_REPEAT)}


#: Bound on the words a two-token anchor may stand for.
MAX_PAIR_KEYS = 4096


def make_pattern(
    tests: Sequence[TokenTest],
    common: frozenset[int] = frozenset(),
    frequent: frozenset[int] = frozenset(),
) -> Pattern:
    """Choose the anchor: a required token, preferring the fewest words that
    are in most texts (``frequent``), then tokens with no stop word at all
    (``common``), then the fewest words. When every required token has a
    frequent word, two adjacent required tokens anchor together ("you
    should" is rarer than "you" or "should")."""
    best: int | None = None
    best_cost: tuple[int, int, int] = (0, 0, 0)
    for k, test in enumerate(tests):
        if test.op != "1" or test.key_in is None:
            continue
        cost = (
            len(test.key_in & frequent),
            int(bool(test.key_in & common)),
            len(test.key_in),
        )
        if best is None or cost < best_cost:
            best, best_cost = k, cost
    if best is None:
        return _flag_anchored(tests)
    keys: frozenset[AnchorKey] = frozenset(tests[best].key_in or ())
    pair = False
    if best_cost[0]:
        pairs = [
            k
            for k in range(len(tests) - 1)
            if tests[k].op == "1"
            and tests[k + 1].op == "1"
            and tests[k].key_in is not None
            and tests[k + 1].key_in is not None
            and len(tests[k].key_in or ()) * len(tests[k + 1].key_in or ()) <= MAX_PAIR_KEYS
        ]
        if pairs:
            best = min(
                pairs, key=lambda k: len(tests[k].key_in or ()) * len(tests[k + 1].key_in or ())
            )
            pair = True
            keys = frozenset(
                pair_key(a, b)
                for a in tests[best].key_in or ()
                for b in tests[best + 1].key_in or ()
            )
    pre_min = sum(_SPAN[t.op][0] for t in tests[:best])
    pre_max = sum(_SPAN[t.op][1] for t in tests[:best])
    before = tuple(reversed(tests[:best]))
    required = tuple(
        sorted(
            (
                t.key_in
                for k, t in enumerate(tests)
                if k != best and t.op in ("1", "+") and t.key_in
            ),
            key=len,
        )
    )
    return Pattern(
        tuple(tests), best, keys, pre_min, pre_max, before, pair_anchor=pair, required=required
    )


def _flag_anchored(tests: Sequence[TokenTest]) -> Pattern:
    """A pattern with no known word: anchor it on a required flag if it has one."""
    for k, test in enumerate(tests):
        if test.op != "1":
            continue
        for name, wanted in test.flags:
            if wanted and name in FLAG_ATTRS:
                pre_min = sum(_SPAN[t.op][0] for t in tests[:k])
                pre_max = sum(_SPAN[t.op][1] for t in tests[:k])
                before = tuple(reversed(tests[:k]))
                run = 0
                for t in tests[k:]:
                    if t.op != "1" or ("IS_UPPER", True) not in t.flags:
                        break
                    run += 1
                return Pattern(
                    tuple(tests),
                    k,
                    frozenset(),
                    pre_min,
                    pre_max,
                    before,
                    name,
                    gate=_capitals(run) if run else None,
                    capitals=2 * run,
                )
    return Pattern(tuple(tests), None)


def pair_key(first: int, second: int) -> tuple[int, int]:
    """The index key of two adjacent words."""
    return (first, second)
