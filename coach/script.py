"""Script folding for matching, and Latin/Cyrillic transliteration for output.

Matching compares folded forms: lowercase, Serbian Cyrillic written in Latin,
and, for the South Slavic languages, diacritics dropped.
"""

from __future__ import annotations

import re
import unicodedata

_CYR_TO_LAT: dict[str, str] = {
    "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "ђ": "đ", "е": "e", "ж": "ž",
    "з": "z", "и": "i", "ј": "j", "к": "k", "л": "l", "љ": "lj", "м": "m", "н": "n",
    "њ": "nj", "о": "o", "п": "p", "р": "r", "с": "s", "т": "t", "ћ": "ć", "у": "u",
    "ф": "f", "х": "h", "ц": "c", "ч": "č", "џ": "dž", "ш": "š",
}  # fmt: skip

_CYR_TO_LAT_TABLE = {ord(k): v for k, v in _CYR_TO_LAT.items()} | {
    ord(k.upper()): (v[0].upper() + v[1:]) for k, v in _CYR_TO_LAT.items()
}

_DIACRITICS_TABLE = str.maketrans(
    {"č": "c", "ć": "c", "š": "s", "ž": "z", "đ": "dj", "Č": "C", "Ć": "C", "Š": "S",
     "Ž": "Z", "Đ": "Dj"}
)  # fmt: skip

#: Length-preserving replacements applied to text before tokenizing.
_PUNCT = (("’", "'"), ("‘", "'"), ("ʼ", "'"), ("“", '"'), ("”", '"'))

_LAT_DIGRAPHS = {"dž": "џ", "lj": "љ", "nj": "њ"}
_LAT_TO_CYR: dict[str, str] = {v: k for k, v in _CYR_TO_LAT.items() if len(v) == 1}


_CURLY = re.compile("[" + "".join(curly for curly, _ in _PUNCT) + "]")


def normalize_punctuation(text: str) -> str:
    """Straighten curly quotes; keeps every offset."""
    # str.translate looks up every character; most texts have nothing to change.
    if text.isascii():
        return text
    if _CURLY.search(text):
        # str.replace runs in C; str.translate calls back for every
        # character of a non-ASCII text (ten times slower here).
        for curly, straight in _PUNCT:
            text = text.replace(curly, straight)
    return text


def cyrillic_to_latin(text: str) -> str:
    return text.translate(_CYR_TO_LAT_TABLE)


def strip_diacritics(text: str) -> str:
    return text.translate(_DIACRITICS_TABLE)


def fold(word: str, lang: str) -> str:
    """The form a word is matched by."""
    folded = word.lower()
    if lang == "en" or folded.isascii():
        return folded
    folded = strip_diacritics(cyrillic_to_latin(folded))
    if not folded.isascii():
        decomposed = unicodedata.normalize("NFD", folded)
        folded = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return folded


def is_cyrillic(text: str) -> bool:
    """True when most letters of ``text`` are Cyrillic."""
    cyr = lat = 0
    for ch in text:
        if "\u0400" <= ch <= "\u04ff":
            cyr += 1
        elif ch.isalpha():
            lat += 1
    return cyr > lat


def latin_to_cyrillic(text: str) -> str:
    """Serbian Latin to Cyrillic; slot names in ``{...}`` are left alone."""
    out: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "{":
            close = text.find("}", i)
            if close != -1:
                out.append(text[i : close + 1])
                i = close + 1
                continue
        if ch.isascii() and ch.isupper() and (i == 0 or not text[i - 1].isalpha()):
            # An acronym (CVV, PIN, SMS) stays in Latin letters.
            j = i
            while j < n and text[j].isascii() and (text[j].isupper() or text[j].isdigit()):
                j += 1
            if j - i >= 2 and (j == n or not text[j].isalpha()):
                out.append(text[i:j])
                i = j
                continue
        pair = text[i : i + 2]
        lower_pair = pair.lower()
        if lower_pair in _LAT_DIGRAPHS:
            cyr = _LAT_DIGRAPHS[lower_pair]
            out.append(cyr.upper() if pair[0].isupper() else cyr)
            i += 2
            continue
        lower = ch.lower()
        if lower in _LAT_TO_CYR:
            cyr = _LAT_TO_CYR[lower]
            out.append(cyr.upper() if ch.isupper() else cyr)
        else:
            out.append(ch)
        i += 1
    return "".join(out)
