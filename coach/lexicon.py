"""Lemma → surface forms, from spacy-lookups-data (en, hr, sr) and simplemma (sl).

The lookup tables map forms to lemmas and are large (the Croatian one holds
2 million forms), so they are never kept: when rules compile, the table is
scanned once for the lemmas the rules name, and the inverted result is cached
on disk under a key made of the language, the lemmas and the table's version.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

_PAIR = re.compile(r'"((?:[^"\\]|\\.)*)"\s*:\s*"((?:[^"\\]|\\.)*)"')

FoldFn = Callable[[str], str]


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "missing"


def table_version(lang: str) -> str:
    if lang == "sl":
        return "simplemma-" + _version("simplemma")
    return "spacy-lookups-data-" + _version("spacy-lookups-data")


def _spacy_pairs(lang: str) -> Iterator[tuple[str, str]]:
    import spacy_lookups_data

    path = Path(spacy_lookups_data.__file__).parent / "data" / f"{lang}_lemma_lookup.json.gz"
    if not path.exists():
        return
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        raw = fh.read()
    for m in _PAIR.finditer(raw):
        form, lemma = m.group(1), m.group(2)
        if "\\" in form or "\\" in lemma:
            form, lemma = json.loads(f'"{form}"'), json.loads(f'"{lemma}"')
        yield form, lemma


def _simplemma_pairs(lang: str) -> Iterator[tuple[str, str]]:
    from simplemma.strategies.dictionaries.dictionary_factory import DefaultDictionaryFactory

    table = DefaultDictionaryFactory().get_dictionary(lang)
    for form, lemma in table.items():
        yield form, lemma.decode("utf-8") if isinstance(lemma, bytes) else lemma


def _pairs(lang: str) -> Iterator[tuple[str, str]]:
    return _simplemma_pairs(lang) if lang == "sl" else _spacy_pairs(lang)


def expand(lang: str, lemmas: Iterable[str], fold: FoldFn) -> dict[str, list[str]]:
    """Map each folded lemma to the folded forms the table lists for it."""
    wanted = {fold(lemma) for lemma in lemmas}
    forms: dict[str, set[str]] = {lemma: {lemma} for lemma in wanted}
    if not wanted:
        return {}
    folded_lemmas: dict[str, str] = {}
    for form, lemma in _pairs(lang):
        key = folded_lemmas.get(lemma)
        if key is None:
            key = folded_lemmas[lemma] = fold(lemma)
        if key in wanted:
            forms[key].add(fold(form))
    return {lemma: sorted(found) for lemma, found in forms.items()}


class LemmaCache:
    """Lemma expansions on disk, keyed by language, lemma set and table version."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory

    def _key(self, lang: str, lemmas: set[str]) -> str:
        digest = hashlib.sha256()
        digest.update(f"{lang}\n{table_version(lang)}\n".encode())
        for lemma in sorted(lemmas):
            digest.update(lemma.encode() + b"\n")
        return digest.hexdigest()[:24]

    def get(self, lang: str, lemmas: set[str], fold: FoldFn) -> dict[str, list[str]]:
        if not lemmas:
            return {}
        if self.directory is None:
            return expand(lang, lemmas, fold)
        path = self.directory / f"lemmas-{lang}-{self._key(lang, lemmas)}.json"
        try:
            with path.open(encoding="utf-8") as fh:
                cached: dict[str, list[str]] = json.load(fh)
            return cached
        except (OSError, ValueError):
            pass
        result = expand(lang, lemmas, fold)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(result, fh, ensure_ascii=False)
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only cache only costs time
        return result
