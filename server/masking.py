"""Payment card numbers typed into a chat are masked before they are stored.

A card number is a run of 13 to 19 digits, optionally grouped by single
spaces or dashes, that passes the Luhn check. All but the last four digits
become ``•``; the grouping is kept so the text still reads naturally.
"""

from __future__ import annotations

import re

MASK = "•"
_CANDIDATE = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _mask_match(m: re.Match[str]) -> str:
    run = m.group(0)
    digits = re.sub(r"\D", "", run)
    if not 13 <= len(digits) <= 19 or not luhn_valid(digits):
        return run
    keep = 4
    seen = 0
    out = []
    for ch in reversed(run):
        if ch.isdigit():
            seen += 1
            out.append(ch if seen <= keep else MASK)
        else:
            out.append(ch)
    return "".join(reversed(out))


def mask_cards(text: str) -> tuple[str, bool]:
    """``text`` with card numbers masked, and whether anything was masked."""
    masked = _CANDIDATE.sub(_mask_match, text)
    return masked, masked != text
