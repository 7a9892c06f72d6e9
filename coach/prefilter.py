"""Cheap necessary conditions for regular expressions.

A rule's ``regex`` runs on the whole text, and Python's ``re`` scans every
position of it. Most rule regexes name words, though: ``\\b(absolutely|
certainly)\\s+not\\b`` cannot match a text that contains neither
"absolutely" nor "certainly". :func:`required_literals` finds such a set of
strings by walking the parsed expression, and the engine runs the regex
only when one of them occurs in the lowercased text.
"""

from __future__ import annotations

import warnings
from typing import Any

with warnings.catch_warnings():
    # Deprecated aliases of re._parser and re._constants, but the typed ones.
    warnings.simplefilter("ignore", DeprecationWarning)
    import sre_constants
    import sre_parse

#: Shorter literals filter too little to be worth it.
MIN_LITERAL = 2
#: Except for punctuation, which is rare enough in chat text to be worth it.
_RARE_CHARS = frozenset("!?%$€#@*")

_LITERAL = sre_constants.LITERAL
_SUBPATTERN = sre_constants.SUBPATTERN
_BRANCH = sre_constants.BRANCH
_REPEATS = {sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT}
_POSSESSIVE = getattr(sre_constants, "POSSESSIVE_REPEAT", None)
if _POSSESSIVE is not None:
    _REPEATS.add(_POSSESSIVE)
_ZERO_WIDTH = {sre_constants.AT, sre_constants.ASSERT, sre_constants.ASSERT_NOT}


def _useful(options: frozenset[str]) -> bool:
    return bool(options) and all(len(s) >= MIN_LITERAL or s in _RARE_CHARS for s in options)


def _best(candidates: list[frozenset[str]]) -> frozenset[str] | None:
    good = [c for c in candidates if _useful(c)]
    return max(good, key=lambda c: (min(len(s) for s in c), -len(c))) if good else None


def _required(seq: Any) -> list[frozenset[str]]:
    """Sets of strings that must all be matched: one string of each set."""
    candidates: list[frozenset[str]] = []
    run: list[str] = []

    def close_run() -> None:
        if run:
            candidates.append(frozenset({"".join(run).lower()}))
            run.clear()

    for op, arg in seq:
        if op == _LITERAL:
            run.append(chr(arg))
            continue
        if op in _REPEATS and arg[0] >= 1 and len(arg[2]) == 1 and arg[2][0][0] == _LITERAL:
            # a x{3,} b needs "axxx" and "xb": the literals on either side join
            # the repeated one, a stronger filter than its characters alone.
            char = chr(arg[2][0][1])
            run.append(char * min(arg[0], 8))
            close_run()
            run.append(char)
            continue
        close_run()
        if op in _ZERO_WIDTH:
            continue
        if op == _SUBPATTERN:
            candidates.extend(_required(arg[-1]))
        elif op == _BRANCH:
            options: set[str] = set()
            for branch in arg[1]:
                best = _best(_required(branch))
                if best is None:
                    options = set()
                    break
                options |= best
            if options:
                candidates.append(frozenset(options))
        elif op in _REPEATS:
            low, _high, item = arg
            if low >= 1:
                candidates.extend(_required(item))
    close_run()
    useful = [c for c in candidates if _useful(c)]
    # "!" adds nothing beside "!!!": a single string inside another one goes.
    singles = [next(iter(c)) for c in useful if len(c) == 1]
    return [
        c
        for c in useful
        if len(c) > 1 or not any(s != (w := next(iter(c))) and w in s for s in singles)
    ]


def required_literals(pattern: str) -> tuple[frozenset[str], ...] | None:
    """Sets of strings such that, for ``pattern`` to match, each set has one
    member in the lowercased text; None when nothing useful is required."""
    try:
        parsed = sre_parse.parse(pattern)
    except Exception:  # noqa: BLE001 - an unparsable pattern gets no prefilter
        return None
    sets = _required(parsed.data)
    return tuple(sets) if sets else None
