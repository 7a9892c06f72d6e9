"""The phrasing coach: compile rule packs, check one message."""

from __future__ import annotations

import functools
import hashlib
import re
import string
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import spacy
from pydantic import BaseModel, TypeAdapter
from spacy.attrs import NORM

from coach import script, slots
from coach.errors import CoachError, RuleError, RuleErrors, UnknownLanguageError, UnknownRoleError
from coach.frequent import FREQUENT
from coach.lexicon import LemmaCache
from coach.matcher import AnchorKey, Pattern, TokenTest, TokenView, make_pattern
from coach.prefilter import required_literals
from coach.rulefile import (
    CONVERSATION_FILE,
    NUDGE_KINDS,
    ConversationFile,
    Examples,
    MatchSpec,
    NudgeSpec,
    RuleFile,
    node_line,
    read_conversation_file,
    read_rule_file,
    rule_line,
)
from coach.taxonomy import (
    LANGUAGES,
    SEVERITY_RANK,
    TRUNCATED,
    Role,
    Severity,
    normalize_language,
)

DEFAULT_RULES_DIR = Path(__file__).resolve().parent.parent / "rules"
DEFAULT_MAX_CHARS = 5000

#: spaCy's English tokenizer gives these pieces of contractions; the coach
#: matches them by their full form.
_EN_PIECES = {"n't": "not", "nt": "not", "'m": "am", "'re": "are", "'ll": "will", "'ve": "have"}

_TRUNCATED_MESSAGES = {
    "en": "Only the first {n} characters were checked.",
    "sr": "Provereno je samo prvih {n} znakova.",
    "hr": "Provjereno je samo prvih {n} znakova.",
    "sl": "Preverjenih je bilo le prvih {n} znakov.",
}

_SENTENCE_END = ".!?"
#: Words as language_written counts them.
_WORDS = re.compile(r"[^\W\d_]+")
#: How many tokens before a match an antipattern may start and still overlap it.
EXCEPTION_REACH = 24
#: New words a language's vocabulary may take in before it starts afresh:
#: about 20 MB of spaCy lexemes and strings; starting afresh takes 20-130 ms.
VOCAB_LIMIT = 20_000


class Flag(BaseModel):
    """One finding of the coach in a text."""

    rule: str
    category: str
    severity: Severity
    start: int
    end: int
    text: str
    message: str
    suggestions: list[str]


#: A list of flags to and from JSON, as the server passes them between processes.
FLAG_LIST: TypeAdapter[list[Flag]] = TypeAdapter(list[Flag])


@dataclass(frozen=True, slots=True)
class FilteredRegex:
    """A rule's regex and the strings of which one must occur for it to match."""

    regex: re.Pattern[str]
    literals: tuple[frozenset[str], ...] | None

    def finditer(self, text: str, lowered: str) -> Iterator[re.Match[str]]:
        if self.literals is not None:
            for options in self.literals:
                for lit in options:
                    if lit in lowered:
                        break
                else:
                    return iter(())
        return self.regex.finditer(text)


@dataclass(frozen=True, slots=True)
class ConversationNudge:
    category: str
    severity: Severity
    message: str
    suggestions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    lang: str
    category: str
    role: Role
    severity: Severity
    message: str
    #: The suggestions as scripts whose slots the caller fills.
    scripts: tuple[slots.Script, ...]
    patterns: tuple[Pattern, ...]
    regexes: tuple[FilteredRegex, ...]
    except_patterns: tuple[Pattern, ...]
    except_regexes: tuple[FilteredRegex, ...]
    path: str
    line: int | None
    flag_examples: tuple[str, ...]
    pass_examples: tuple[str, ...]

    @property
    def suggestions(self) -> tuple[str, ...]:
        """The suggestions as written in the rule file."""
        return tuple(s.template for s in self.scripts)


@dataclass(frozen=True, slots=True)
class _Candidate:
    rule: Rule
    start: int  # characters
    end: int
    #: Tokens of the match (None for a regex match): exceptions are looked for near them.
    tokens: tuple[int, int] | None = None


def _new_blank(lang: str) -> Any:
    """spaCy's blank pipeline for ``lang``, with each word's NORM
    set to the form the coach matches by (see :func:`match_form`). spaCy
    stores it on the lexeme, so a text's forms come out of ``Doc.to_array``
    as hashes without a Python call per word."""
    nlp = spacy.blank(lang)
    if lang != "en":
        tokenizer: Any = nlp.tokenizer
        tokenizer.rules = _plain_words(tokenizer.rules)
    vocab: Any = nlp.vocab
    base = vocab.lex_attr_getters.get(NORM)

    def getter(text: str) -> str:
        return match_form(lang, base(text) if lang == "en" and base is not None else text)

    vocab.lex_attr_getters[NORM] = getter
    for lexeme in list(vocab):
        lexeme.norm_ = getter(lexeme.orth_)
    return nlp


def _plain_words(
    special_cases: Mapping[str, list[dict[int, str]]],
) -> dict[str, list[dict[int, str]]]:
    """spaCy's special cases for sr, hr or sl, with a word and its full stop
    two tokens and every word matched by its own form.

    spaCy reads a word with a full stop as an abbreviation, one token ("год."
    for "година", Slovenian "je." and "ste."), and gives some Cyrillic words
    another word's norm ("пет" is "петак"). Then "Како год." matches no
    ``god`` and ends no sentence, unlike "Kako god.", as Latin has no such
    cases. Chat seldom abbreviates: a full stop after letters ends a sentence."""
    kept: dict[str, list[dict[int, str]]] = {}
    for orth, pieces in special_cases.items():
        if orth.endswith(".") and orth[:-1].isalpha():
            continue
        kept[orth] = [{k: v for k, v in piece.items() if k != NORM} for piece in pieces]
    return kept


def match_form(lang: str, word: str) -> str:
    """The form a word is matched by: folded (lowercase, Latin, no
    diacritics) for sr/hr/sl, spaCy's norm for English; no trailing full stop."""
    if lang == "en":
        key = word.lower()
        key = _EN_PIECES.get(key, key)
    else:
        key = script.fold(word, lang)
    if len(key) > 1 and key[-1] == "." and key[:-1].isalpha():
        key = key[:-1]
    return key


class _Spacy(NamedTuple):
    """A blank pipeline and the parts of it a check uses, swapped as one."""

    nlp: Any
    tokenizer: Any
    strings: Any
    #: Vocabulary size past which this pipeline is replaced.
    cap: int


def _spacy(nlp: Any, limit: int) -> _Spacy:
    return _Spacy(nlp, nlp.tokenizer, nlp.vocab.strings, len(nlp.vocab) + limit)


class _LanguagePack:
    """The tokenizer of one language and its rules, indexed by anchor word.

    spaCy keeps every word it has seen in its vocabulary (and every chunk of
    text in the tokenizer's cache), so a long-running process that checks
    open-ended chat text (order numbers, names, links) would grow without
    end. Once ``vocab_limit`` words beyond those of the rules have come in,
    the pack starts afresh with a new blank pipeline. Rules hold hashes of
    strings, which do not depend on the vocabulary, so they keep matching;
    a check that is running meanwhile finishes on the pipeline it began with.
    """

    def __init__(self, lang: str, vocab_limit: int = VOCAB_LIMIT) -> None:
        self.lang = lang
        # Each pack has its own pipeline, freed with the pack (a rules reload
        # builds new packs), and replaced by a fresh one past ``vocab_limit``.
        self._spacy = _spacy(_new_blank(lang), vocab_limit)
        self._renewing = threading.Lock()
        self.vocab_limit = vocab_limit
        #: How many times the pack started afresh (for tests and metrics).
        self.renewals = 0
        self.rules: list[Rule] = []
        self.index: dict[str, dict[AnchorKey, list[tuple[Rule, Pattern]]]] = {
            "agent": {},
            "customer": {},
        }
        self.pair_index: dict[str, dict[AnchorKey, list[tuple[Rule, Pattern]]]] = {
            "agent": {},
            "customer": {},
        }
        self.unanchored: dict[str, list[tuple[Rule, Pattern]]] = {"agent": [], "customer": []}
        #: Every key that begins an anchor, single or paired.
        self.anchored: dict[str, frozenset[int]] = {
            "agent": frozenset(),
            "customer": frozenset(),
        }
        #: The words a check of the role looks for in a text: anchors, the
        #: second words of pairs and every other word a pattern requires.
        self.relevant: dict[str, frozenset[int]] = {"agent": frozenset(), "customer": frozenset()}
        #: For each anchor word, the words one of which any of its patterns
        #: still needs (None when one needs no other word): most anchors in a
        #: text are passed over with one set operation.
        self.anchor_needs: dict[str, dict[int, frozenset[int] | None]] = {
            "agent": {},
            "customer": {},
        }
        #: For the first word of a two-word anchor, the words that may follow.
        self.pair_seconds: dict[str, dict[int, frozenset[int]]] = {"agent": {}, "customer": {}}
        self.regex_rules: dict[str, list[Rule]] = {"agent": [], "customer": []}
        #: One search for the strings one of which any of the role's regexes
        #: needs; None when some regex needs none.
        self.regex_gate: dict[str, Callable[[str], bool] | None] = {"agent": None, "customer": None}
        # Conversation data (rules/<lang>/conversation.yaml).
        self.nudges: dict[str, NudgeSpec] = {}
        self.phrases: dict[str, tuple[tuple[Pattern, ...], tuple[FilteredRegex, ...]]] = {}
        self.topics: list[
            tuple[dict[str, str], tuple[tuple[Pattern, ...], tuple[FilteredRegex, ...]]]
        ] = []
        self.phrase_examples: dict[str, Examples] = {}
        self.common = frozenset(
            self.hash(self.word_key(w))
            for w in [*self.nlp.Defaults.stop_words, *string.punctuation]
        )
        #: Words in most messages: the last choice for an anchor.
        self.frequent = frozenset(
            self.hash(self.word_key(w)) for w in [*FREQUENT[lang], *string.punctuation]
        )

    @property
    def nlp(self) -> Any:
        return self._spacy.nlp

    @property
    def tokenizer(self) -> Any:
        return self._spacy.tokenizer

    @property
    def strings(self) -> Any:
        return self._spacy.strings

    def _renew(self, used: _Spacy) -> None:
        """Replace ``used`` with a fresh pipeline, unless another thread did."""
        with self._renewing:
            if self._spacy is used:
                self._spacy = _spacy(_new_blank(self.lang), self.vocab_limit)
                self.renewals += 1

    # Words.

    def hash(self, key: str) -> int:
        """The hash of a match form, as ``Doc.to_array(NORM)`` gives it."""
        return int(self.strings.add(key))

    def word_key(self, word: str) -> str:
        """The match form of a word written in a rule."""
        word = script.normalize_punctuation(word.strip())
        if self.lang == "en" and word.lower() in _EN_PIECES:
            return _EN_PIECES[word.lower()]
        doc = self.tokenizer(word)
        if len(doc) == 1:
            return str(doc[0].norm_)
        return match_form(self.lang, word)

    def view(self, text: str) -> TokenView:
        """Tokenize ``text``; each token's match form comes as a hash."""
        used = self._spacy
        nlp, tokenizer, strings, cap = used
        doc = tokenizer(text)
        hashes = doc.to_array(NORM).tolist() if len(doc) else []
        if len(nlp.vocab) > cap:
            self._renew(used)  # the next text goes to a fresh pipeline
        return TokenView(doc, hashes, strings, text)

    # Compiling.

    def add(self, rule: Rule) -> None:
        self.rules.append(rule)
        for pattern in rule.patterns:
            if pattern.anchor is None or pattern.flag_anchor is not None:
                self.unanchored[rule.role].append((rule, pattern))
            else:
                index = self.pair_index[rule.role] if pattern.pair_anchor else self.index[rule.role]
                for key in pattern.anchor_keys:
                    index.setdefault(key, []).append((rule, pattern))
                    if isinstance(key, tuple):
                        seconds = self.pair_seconds[rule.role]
                        seconds[key[0]] = seconds.get(key[0], frozenset()) | {key[1]}
        if rule.regexes:
            self.regex_rules[rule.role].append(rule)

    def seal(self) -> None:
        """Index what :meth:`add` gathered; called once all rules are in."""
        self._spacy = _spacy(self.nlp, self.vocab_limit)  # the rules' words are in
        for role in self.anchored:
            seconds = self.pair_seconds[role]
            self.anchored[role] = frozenset(
                k for k in [*self.index[role], *seconds] if isinstance(k, int)
            )
            required = {
                word
                for entries in [*self.index[role].values(), *self.pair_index[role].values()]
                for _, pattern in entries
                for words in pattern.required
                for word in words
            }
            self.relevant[role] = self.anchored[role].union(required, *seconds.values())
            needs: dict[int, frozenset[int] | None] = {}
            for key, entries in self.index[role].items():
                if isinstance(key, int):
                    firsts = [pattern.required[0] for _, pattern in entries if pattern.required]
                    needs[key] = frozenset().union(*firsts) if len(firsts) == len(entries) else None
            self.anchor_needs[role] = needs
            regexes = [rx for rule in self.regex_rules[role] for rx in rule.regexes]
            if regexes and all(rx.literals for rx in regexes):
                needed = sorted({lit for rx in regexes if rx.literals for lit in rx.literals[0]})
                self.regex_gate[role] = _gate(needed)


#: Up to this many strings, a gate looks for each with ``in``; past it, one regex.
_GATE_STRINGS = 8


def _gate(needed: list[str]) -> Callable[[str], bool]:
    """Whether a text contains one of ``needed`` (lowercase strings). Strings
    with no letters ("!!!", "?!") are looked for in the text as it is, with
    no lowercased copy; a few strings are quicker with ``in`` than with a
    regex, which tries every position of the text."""
    fold: Callable[[str], str] = str.lower if any(s.lower() != s.upper() for s in needed) else str
    if len(needed) > _GATE_STRINGS:
        search = re.compile("|".join(map(re.escape, needed))).search
        return lambda text: search(fold(text)) is not None
    strings = tuple(needed)

    def contains(text: str) -> bool:
        text = fold(text)
        for s in strings:  # noqa: SIM110 - a plain loop beats any() over a generator
            if s in text:
                return True
        return False

    return contains


class _Compiler:
    """Turns validated rule files into patterns; lemmas expand through the cache."""

    def __init__(self, pack: _LanguagePack, lemma_forms: Mapping[str, list[str]]) -> None:
        self.pack = pack
        self.lemma_forms = lemma_forms

    def _words(self, key: str, value: str | list[str]) -> set[int]:
        """Hashes of the match forms a LOWER/NORM/LEMMA value stands for."""
        values = [value] if isinstance(value, str) else value
        words: set[str] = set()
        for v in values:
            if key == "LEMMA":
                folded = script.fold(v, self.pack.lang)
                forms = self.lemma_forms.get(folded, ())
                words.update(match_form(self.pack.lang, f) for f in forms)
            words.add(self.pack.word_key(v))
        return {self.pack.hash(w) for w in words}

    def token_test(self, spec: dict[str, Any]) -> TokenTest:
        key_in: set[int] | None = None
        key_not_in: set[int] = set()
        key_regex: list[re.Pattern[str]] = []
        text_in: set[str] | None = None
        text_not_in: set[str] = set()
        text_regex: list[re.Pattern[str]] = []
        flags: list[tuple[str, bool]] = []
        length: list[tuple[str, int]] = []
        for key, value in spec.items():
            if key in ("LOWER", "NORM", "LEMMA"):
                if isinstance(value, str):
                    words = self._words(key, value)
                    key_in = words if key_in is None else key_in & words
                    continue
                for sub, arg in value.items():
                    sub = sub.upper()
                    if sub == "IN":
                        words = self._words(key, arg)
                        key_in = words if key_in is None else key_in & words
                    elif sub == "NOT_IN":
                        key_not_in |= self._words(key, arg)
                    else:
                        key_regex.append(re.compile(arg))
            elif key == "TEXT":
                if isinstance(value, str):
                    text_in = {value} if text_in is None else text_in & {value}
                    continue
                for sub, arg in value.items():
                    sub = sub.upper()
                    if sub == "IN":
                        text_in = set(arg) if text_in is None else text_in & set(arg)
                    elif sub == "NOT_IN":
                        text_not_in |= set(arg)
                    else:
                        text_regex.append(re.compile(arg))
            elif key == "LENGTH":
                if isinstance(value, int):
                    length.append(("==", value))
                else:
                    length.extend(value.items())
            elif key == "OP":
                continue
            else:
                flags.append((key, bool(value)))
        return TokenTest(
            op=str(spec.get("OP", "1")),
            key_in=None if key_in is None else frozenset(key_in),
            key_not_in=frozenset(key_not_in),
            key_regex=tuple(key_regex),
            text_in=None if text_in is None else frozenset(text_in),
            text_not_in=frozenset(text_not_in),
            text_regex=tuple(text_regex),
            flags=tuple(flags),
            length=tuple(length),
        )

    def phrase(self, text: str) -> Pattern:
        view = self.pack.view(script.normalize_punctuation(text))
        tests = [TokenTest(key_in=frozenset({h})) for h in view.keys]
        return make_pattern(tests, self.pack.common, self.pack.frequent)

    def specs(
        self, specs: Iterable[MatchSpec]
    ) -> tuple[tuple[Pattern, ...], tuple[FilteredRegex, ...]]:
        patterns: list[Pattern] = []
        regexes: list[FilteredRegex] = []
        for spec in specs:
            if spec.phrase is not None:
                patterns.append(self.phrase(spec.phrase))
            elif spec.pattern is not None:
                tests = [self.token_test(t) for t in spec.pattern]
                patterns.append(make_pattern(tests, self.pack.common, self.pack.frequent))
            elif spec.regex is not None:
                regexes.append(
                    FilteredRegex(
                        re.compile(spec.regex, re.IGNORECASE), required_literals(spec.regex)
                    )
                )
        return tuple(patterns), tuple(regexes)


def _conversation_lemmas(conv: ConversationFile | None) -> set[str]:
    if conv is None:
        return set()
    specs = [spec for phrase_set in conv.phrases.values() for spec in phrase_set.match]
    specs += [spec for topic in conv.topics for spec in topic.match]
    return _lemmas_in(specs)


def _lemmas_of(files: Iterable[RuleFile]) -> set[str]:
    return _lemmas_in(
        spec
        for rule_file in files
        for rule in rule_file.rules
        for spec in [*rule.match, *rule.except_]
    )


def _fold_for(lang: str, word: str) -> str:
    return script.fold(word, lang)


def _lemmas_in(specs: Iterable[MatchSpec]) -> set[str]:
    lemmas: set[str] = set()
    for spec in specs:
        for token in spec.pattern or ():
            value = token.get("LEMMA")
            if isinstance(value, str):
                lemmas.add(value)
            elif isinstance(value, dict):
                for sub, arg in value.items():
                    if sub.upper() in ("IN", "NOT_IN"):
                        lemmas.update(arg)
    return lemmas


def _example_line(node: Any, rule_index: int, kind: str, i: int) -> int | None:
    return node_line(node, ("rules", rule_index, "examples", kind, i))


@dataclass(frozen=True, slots=True)
class ExampleFailure:
    rule: str
    path: str
    line: int | None
    sentence: str
    expected: str
    got: str

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return (
            f"{where}: rule {self.rule}: {self.sentence!r}: "
            f"expected {self.expected}, got {self.got}"
        )


class Coach:
    """Compiled rule packs for every language. Immutable and safe to share between threads."""

    def __init__(
        self,
        packs: dict[str, _LanguagePack],
        fingerprint: str,
        max_chars: int = DEFAULT_MAX_CHARS,
    ) -> None:
        self._packs = packs
        self.fingerprint = fingerprint
        self.max_chars = max_chars
        self._example_lines: dict[tuple[str, str], int | None] = {}

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(self._packs)

    @property
    def rules(self) -> list[Rule]:
        return [rule for pack in self._packs.values() for rule in pack.rules]

    @classmethod
    def load(
        cls,
        rules_dir: Path | str | None = None,
        *,
        cache_dir: Path | str | None = None,
        check_examples: bool = True,
        max_chars: int = DEFAULT_MAX_CHARS,
        languages: Iterable[str] = LANGUAGES,
        vocab_limit: int = VOCAB_LIMIT,
    ) -> Coach:
        """Compile every ``rules_dir/<lang>/*.yaml``.

        Raises :class:`RuleErrors` listing each bad file (file, line, rule,
        what is wrong); nothing is half-loaded. With ``check_examples``, each
        rule's examples must behave too. ``vocab_limit`` bounds the new words
        each language keeps between fresh starts (see :class:`_LanguagePack`).
        """
        root = Path(rules_dir) if rules_dir is not None else DEFAULT_RULES_DIR
        cache = LemmaCache(Path(cache_dir) if cache_dir is not None else _default_cache_dir())
        if not root.is_dir():
            raise RuleErrors([RuleError("R000", root, None, None, "no such rules directory")])
        errors: list[RuleError] = []
        parsed: dict[str, list[tuple[Path, RuleFile, Any]]] = {}
        digest = hashlib.sha256()
        seen_ids: dict[str, str] = {}
        conversations: dict[str, tuple[ConversationFile, Any]] = {}
        for lang in languages:
            parsed[lang] = []
            for path in sorted((root / lang).glob("*.yaml")):
                digest.update(str(path.relative_to(root)).encode() + b"\0")
                if path.name == CONVERSATION_FILE:
                    try:
                        digest.update(path.read_bytes())
                        conversations[lang] = read_conversation_file(path)
                    except (RuleError, OSError) as exc:
                        errors.append(
                            exc
                            if isinstance(exc, RuleError)
                            else RuleError("R001", path, None, None, str(exc))
                        )
                    continue
                try:
                    digest.update(path.read_bytes())
                    rule_file, node = read_rule_file(path)
                except (RuleError, OSError) as exc:
                    errors.append(
                        exc
                        if isinstance(exc, RuleError)
                        else RuleError("R001", path, None, None, str(exc))
                    )
                    continue
                if rule_file.lang != lang:
                    errors.append(
                        RuleError(
                            "R009", path, 1, None, f"lang {rule_file.lang!r} in folder {lang!r}"
                        )
                    )
                    continue
                for rule in rule_file.rules:
                    if rule.id in seen_ids:
                        errors.append(
                            RuleError(
                                "R008",
                                path,
                                None,
                                rule.id,
                                f"duplicate id, also in {seen_ids[rule.id]}",
                            )
                        )
                    seen_ids[rule.id] = str(path)
                parsed[lang].append((path, rule_file, node))
        if errors:
            raise RuleErrors(errors)

        packs: dict[str, _LanguagePack] = {}
        example_lines: dict[tuple[str, str], int | None] = {}
        for lang, files in parsed.items():
            pack = _LanguagePack(lang, vocab_limit)
            lemma_forms = cache.get(
                lang,
                _lemmas_of(f for _, f, _ in files)
                | _conversation_lemmas(conversations[lang][0] if lang in conversations else None),
                functools.partial(_fold_for, lang),
            )
            compiler = _Compiler(pack, lemma_forms)
            if lang in conversations:
                conv, _node = conversations[lang]
                pack.nudges = dict(conv.nudges)
                for kind, phrase_set in conv.phrases.items():
                    pack.phrases[kind] = compiler.specs(phrase_set.match)
                    pack.phrase_examples[kind] = phrase_set.examples
                pack.topics = [(t.slots(), compiler.specs(t.match)) for t in conv.topics]
            for path, rule_file, node in files:
                for i, spec in enumerate(rule_file.rules):
                    patterns, regexes = compiler.specs(spec.match)
                    except_patterns, except_regexes = compiler.specs(spec.except_)
                    pack.add(
                        Rule(
                            id=spec.id,
                            lang=lang,
                            category=rule_file.category,
                            role=spec.role or rule_file.role,
                            severity=spec.severity,
                            message=spec.message,
                            scripts=tuple(slots.Script(s) for s in spec.suggestions),
                            patterns=patterns,
                            regexes=regexes,
                            except_patterns=except_patterns,
                            except_regexes=except_regexes,
                            path=str(path),
                            line=rule_line(node, i),
                            flag_examples=tuple(spec.examples.flag),
                            pass_examples=tuple(spec.examples.pass_),
                        )
                    )
                    for kind, sentences in (
                        ("flag", spec.examples.flag),
                        ("pass", spec.examples.pass_),
                    ):
                        for j, sentence in enumerate(sentences):
                            example_lines[(spec.id, kind + sentence)] = _example_line(
                                node, i, kind, j
                            )
            pack.seal()
            packs[lang] = pack

        coach = cls(packs, digest.hexdigest()[:16], max_chars=max_chars)
        coach._example_lines = example_lines
        if check_examples:
            failures = coach.test_examples()
            if failures:
                raise RuleErrors(
                    [RuleError("R010", f.path, f.line, f.rule, _failure_text(f)) for f in failures]
                )
        return coach

    # Checking.

    def language_of(self, lang: str) -> str:
        """The coach language for a tag such as ``sr-Cyrl``; raises UnknownLanguageError."""
        return self._pack(lang).lang

    def language_written(self, text: str, lang: str) -> str:
        """The language to check ``text`` in, written in a chat in ``lang``: English when
        it reads as English in a chat in another language (an agent who took a chat in a
        language they do not speak, a customer who writes English on a Serbian site), else
        ``lang``. Read from the commonest words: two or more English ones, and more than
        of the chat's own language."""
        chat = self._pack(lang).lang
        if chat == "en" or "en" not in self._packs:
            return lang
        words = _WORDS.findall(text[: self.max_chars].lower())
        english = sum(1 for w in words if w in FREQUENT["en"])
        if english < 2:
            return lang
        own = FREQUENT[chat]
        native = sum(1 for w in words if script.fold(w, chat) in own)
        return "en" if english > native else lang

    def conversation_entry(self, lang: str, kind: str) -> ConversationNudge:
        """Message and scripts of a conversation nudge (rules/<lang>/conversation.yaml)."""
        pack = self._pack(lang)
        spec = pack.nudges.get(kind)
        if spec is None:
            raise CoachError(
                f"[C003] no {kind!r} nudge for {pack.lang!r}: rules/{pack.lang}/{CONVERSATION_FILE}"
            )
        return ConversationNudge(
            NUDGE_KINDS[kind], spec.severity, spec.message, tuple(spec.suggestions)
        )

    def conversation_finds(self, text: str, lang: str, kind: str) -> bool:
        """Whether ``text`` has one of the conversation phrases ``kind``
        (``introduces``, ``asks_name``, ``thanks``)."""
        pack = self._pack(lang)
        if kind not in pack.phrases or not text.strip():
            return False
        checked = script.normalize_punctuation(text[: self.max_chars])
        return _finds(pack.view(checked), checked, pack.phrases[kind])

    def conversation_topic(self, text: str, lang: str) -> dict[str, str] | None:
        """What ``text`` is about, as ``topic`` and ``topic_<case>`` slot values, or None."""
        pack = self._pack(lang)
        if not pack.topics or not text.strip():
            return None
        checked = script.normalize_punctuation(text[: self.max_chars])
        view = pack.view(checked)
        for topic, specs in pack.topics:
            if _finds(view, checked, specs):
                if pack.lang == "sr" and script.is_cyrillic(text):
                    return {k: script.latin_to_cyrillic(v) for k, v in topic.items()}
                return dict(topic)
        return None

    def _pack(self, lang: str) -> _LanguagePack:
        pack = None
        if isinstance(lang, str):
            # A code as the coach names it needs no normalising (the common case).
            pack = self._packs.get(lang) or self._packs.get(normalize_language(lang) or "")
        if pack is None:
            raise UnknownLanguageError(str(lang), self.languages)
        return pack

    def check(
        self,
        text: str,
        lang: str,
        role: str = "agent",
        *,
        slots: Mapping[str, str | None] | None = None,
        include_offers: bool = False,
        categories: Collection[str] | None = None,
        resolve_overlaps: bool = True,
    ) -> list[Flag]:
        """The flags of one message, in text order.

        ``role`` is ``agent`` (phrasing to improve) or ``customer`` (cues for
        the agent). ``slots`` fill ``{customer_name}``, ``{agent_name}`` and
        ``{topic}`` in scripts. Offers (``upsell_when_upset``) are reported
        only with ``include_offers``: whether they are a problem depends on
        the conversation.
        """
        pack = self._pack(lang)
        if role not in ("agent", "customer"):
            raise UnknownRoleError(role)
        if not text or not text.strip():
            return []
        truncated = len(text) > self.max_chars
        checked = script.normalize_punctuation(text[: self.max_chars])
        # Each line on its own: no match, and no clause a suggestion replaces, runs from
        # one line into the next.
        candidates: list[_Candidate] = []
        for offset, line in _lines(checked) if "\n" in checked else ((0, checked),):
            view = pack.view(line)
            found = self._candidates(pack, view, line, role)
            if not found:  # most messages
                continue
            if categories is not None:
                found = [c for c in found if c.rule.category in categories]
            elif not include_offers:
                found = [c for c in found if c.rule.category != "upsell_when_upset"]
            found = self._without_exceptions(pack, view, line, found)
            if offset:
                found = [_Candidate(c.rule, c.start + offset, c.end + offset) for c in found]
            candidates += found
        if not candidates:
            return [self._truncated_flag(pack.lang, text)] if truncated else []
        if resolve_overlaps:
            candidates = _resolve_overlaps(candidates)
        text_cyrillic = pack.lang == "sr" and script.is_cyrillic(text)
        flags = [
            self._flag(c, text, _span_is_cyrillic(text[c.start : c.end], text_cyrillic), slots)
            if pack.lang == "sr"
            else self._flag(c, text, False, slots)
            for c in candidates
        ]
        if truncated:
            flags.append(self._truncated_flag(pack.lang, text))
        return flags

    def _candidates(
        self, pack: _LanguagePack, view: TokenView, text: str, role: str
    ) -> list[_Candidate]:
        out: list[_Candidate] = []
        keys = view.keys
        # Most words matter to no pattern: find the few that do (one set
        # operation in C), and skip the rest when none anchors anything.
        present = pack.relevant[role].intersection(keys)
        anchored = pack.anchored[role].intersection(present) if present else present
        if anchored:
            index = pack.index[role]
            pairs = pack.pair_index[role]
            seconds = pack.pair_seconds[role]
            last = len(keys) - 1
            needs = pack.anchor_needs[role]
            for key in anchored:
                # Patterns whose other required words are all in the text.
                need = needs.get(key, frozenset())
                if need is None or not present.isdisjoint(need):
                    entries = [e for e in index[key] if e[1].possible_in(present)]
                else:
                    entries = []
                follow = seconds.get(key)
                if follow is not None and present.isdisjoint(follow):
                    follow = None
                if not entries and follow is None:
                    continue
                i = -1
                for _ in range(keys.count(key)):
                    i = keys.index(key, i + 1)
                    todo = entries
                    if follow is not None and i < last:
                        paired = pairs.get((key, keys[i + 1]))
                        if paired:
                            todo = entries + [e for e in paired if e[1].possible_in(present)]
                    for rule, pattern in todo:
                        for start, end in pattern.matches_at_anchor(view, i):
                            start, end = view.within_sentence(start, end)
                            if start < end:
                                span = view.char_span(start, end)
                                out.append(_Candidate(rule, *span, (start, end)))
        for rule, pattern in pack.unanchored[role]:
            for start, end in pattern.find(view):
                start, end = view.within_sentence(start, end)
                if start < end:
                    out.append(_Candidate(rule, *view.char_span(start, end), (start, end)))
        regex_rules = pack.regex_rules[role]
        if regex_rules:
            gate = pack.regex_gate[role]
            if gate is None or gate(text):
                lowered = text.lower()
                for rule in regex_rules:
                    for rx in rule.regexes:
                        for m in rx.finditer(text, lowered):
                            if m.end() > m.start():
                                out.append(_Candidate(rule, m.start(), m.end()))
        if len(out) > 1:  # one rule may reach the same words twice
            seen: set[tuple[str, int, int]] = set()
            unique = []
            for c in out:
                if (c.rule.id, c.start, c.end) not in seen:
                    seen.add((c.rule.id, c.start, c.end))
                    unique.append(c)
            out = sorted(unique, key=lambda c: (c.start, c.end))
        return out

    @staticmethod
    def _without_exceptions(
        pack: _LanguagePack, view: TokenView, text: str, candidates: list[_Candidate]
    ) -> list[_Candidate]:
        lowered: str | None = None
        present: set[int] | None = None

        def excepted(c: _Candidate) -> bool:
            nonlocal lowered, present
            rule = c.rule
            if c.tokens is None:
                lo, hi = 0, len(view)
            else:
                # An antipattern overlapping the match starts within its reach of it.
                lo, hi = c.tokens[0] - EXCEPTION_REACH, c.tokens[1]
            for pattern in rule.except_patterns:
                # Most antipatterns need a word the text does not have at all.
                if present is None:
                    present = set(view.keys)
                if pattern.word_anchored and present.isdisjoint(pattern.anchor_keys):
                    continue
                if pattern.required and not pattern.possible_in(present):
                    continue
                for s, e in pattern.find(view, lo, hi):
                    cs, ce = view.char_span(s, e)
                    if cs < c.end and c.start < ce:
                        return True
            if rule.except_regexes:
                if lowered is None:
                    lowered = text.lower()
                for rx in rule.except_regexes:
                    if any(
                        s < c.end and c.start < e
                        for s, e in (m.span() for m in rx.finditer(text, lowered))
                    ):
                        return True
            return False

        return [
            c
            for c in candidates
            if not ((c.rule.except_patterns or c.rule.except_regexes) and excepted(c))
        ]

    def _flag(
        self,
        c: _Candidate,
        text: str,
        cyrillic: bool,
        values: Mapping[str, str | None] | None,
    ) -> Flag:
        rule = c.rule
        suggestions = [s.fill(values) for s in rule.scripts]
        if rule.role == "agent":
            suggestions = [_fit(s, text, c.start, c.end) for s in suggestions]
        message = rule.message
        if cyrillic:
            suggestions = [script.latin_to_cyrillic(s) for s in suggestions]
            message = script.latin_to_cyrillic(message)
        return Flag(
            rule=rule.id,
            category=rule.category,
            severity=rule.severity,
            start=c.start,
            end=c.end,
            text=text[c.start : c.end],
            message=message,
            suggestions=list(dict.fromkeys(s for s in suggestions if s)),
        )

    def _truncated_flag(self, lang: str, text: str) -> Flag:
        message = _TRUNCATED_MESSAGES[lang].format(n=self.max_chars)
        if lang == "sr" and script.is_cyrillic(text):
            message = script.latin_to_cyrillic(message)
        return Flag(
            rule="coach.text_truncated",
            category=TRUNCATED,
            severity="info",
            start=self.max_chars,
            end=len(text),
            text="",
            message=message,
            suggestions=[],
        )

    # Rule examples.

    def test_examples(self) -> list[ExampleFailure]:
        """Run every rule's examples: ``flag`` must fire the rule, ``pass``
        must fire no rule of its category."""
        failures: list[ExampleFailure] = []
        for rule in self.rules:
            for sentence in rule.flag_examples:
                # Before overlaps are resolved: a sibling rule may report the same words.
                flags = self.check(
                    sentence, rule.lang, rule.role, include_offers=True, resolve_overlaps=False
                )
                if not any(f.rule == rule.id for f in flags):
                    got = ", ".join(f.rule for f in flags) or "no flag"
                    failures.append(self._failure(rule, "flag", sentence, "this rule to fire", got))
            for sentence in rule.pass_examples:
                flags = self.check(sentence, rule.lang, rule.role, include_offers=True)
                hits = [f for f in flags if f.category == rule.category]
                if hits:
                    got = ", ".join(f"{f.rule} on {f.text!r}" for f in hits)
                    failures.append(
                        self._failure(rule, "pass", sentence, f"no {rule.category} flag", got)
                    )
        for lang, pack in self._packs.items():
            path = f"{lang}/{CONVERSATION_FILE}"
            for kind, examples in pack.phrase_examples.items():
                for sentence in examples.flag:
                    if not self.conversation_finds(sentence, lang, kind):
                        failures.append(
                            ExampleFailure(
                                f"{lang}.phrases.{kind}", path, None, sentence, "a match", "none"
                            )
                        )
                for sentence in examples.pass_:
                    if self.conversation_finds(sentence, lang, kind):
                        failures.append(
                            ExampleFailure(
                                f"{lang}.phrases.{kind}",
                                path,
                                None,
                                sentence,
                                "no match",
                                "a match",
                            )
                        )
        return failures

    def _failure(
        self, rule: Rule, kind: str, sentence: str, expected: str, got: str
    ) -> ExampleFailure:
        line = self._example_lines.get((rule.id, kind + sentence), rule.line)
        return ExampleFailure(rule.id, rule.path, line, sentence, expected, got)


def _failure_text(f: ExampleFailure) -> str:
    return f"example {f.sentence!r}: expected {f.expected}, got {f.got}"


def _finds(
    view: TokenView,
    text: str,
    specs: tuple[tuple[Pattern, ...], tuple[FilteredRegex, ...]],
) -> bool:
    patterns, regexes = specs
    if any(True for p in patterns for _ in p.find(view)):
        return True
    lowered = text.lower()
    return any(True for rx in regexes for _ in rx.finditer(text, lowered))


def _lines(text: str) -> Iterator[tuple[int, str]]:
    """The lines of ``text`` that have words, each with where it starts."""
    offset = 0
    for line in text.split("\n"):
        if line.strip():
            yield offset, line
        offset += len(line) + 1


def _resolve_overlaps(candidates: list[_Candidate]) -> list[_Candidate]:
    """Within one category keep the longest of overlapping matches."""
    ordered = sorted(
        candidates,
        key=lambda c: (-(c.end - c.start), -SEVERITY_RANK[c.rule.severity], c.start),
    )
    kept: list[_Candidate] = []
    for c in ordered:
        if any(
            k.rule.category == c.rule.category and k.start < c.end and c.start < k.end for k in kept
        ):
            continue
        kept.append(c)
    kept.sort(key=lambda c: (c.start, c.end, c.rule.id))
    return kept


_LAST_WORD = re.compile(r"(\w+)$")
_FIRST_WORD = re.compile(r"\w+")
_PUNCT = ",.!?;:"
#: A comma or the like that the matched words begin with ("Nažalost, to nije moguće").
_LEADING_PUNCT = re.compile(r"[,;:]\s*")


def _fit(suggestion: str, text: str, start: int, end: int) -> str:
    """Make a suggestion read well spliced in place of ``text[start:end]``."""
    if not suggestion:
        return suggestion
    span = text[start:end].rstrip()
    # ", to nije moguće": the comma stays between the text's word and the suggestion.
    lead = _LEADING_PUNCT.match(span)
    if lead and not _LEADING_PUNCT.match(suggestion):
        start += lead.end()
    else:
        lead = None
    # Not the span's own capital: "Sorry, I don't know" is mid-sentence.
    before = text[:start].rstrip()
    # "Please " + "please use the link…": the word the text already has goes.
    last, first_word = _LAST_WORD.search(before), _FIRST_WORD.match(suggestion)
    if last and first_word and last.group(1).casefold() == first_word.group(0).casefold():
        suggestion = suggestion[first_word.end() :].lstrip()
        if not suggestion:
            return suggestion
    # "…. Molim vas," + ".": the text's own punctuation stays, the suggestion's goes.
    after = text[end : end + 1]
    if after and after in _PUNCT and suggestion[-1] in _PUNCT:
        suggestion = suggestion[:-1].rstrip()
        if not suggestion:
            return suggestion
    # "What's your PIN?" taken whole, its question mark too: the suggestion ends the
    # sentence itself.
    if span and span[-1] in _SENTENCE_END + "…" and suggestion[-1] not in _SENTENCE_END + "…":
        suggestion += "."
    at_sentence_start = not before or before[-1] in _SENTENCE_END or before[-1] in "\n:"
    first = suggestion[0]
    if at_sentence_start:
        suggestion = first.upper() + suggestion[1:]
    elif first.isupper() and not _keeps_capital(suggestion):
        suggestion = first.lower() + suggestion[1:]
    return lead.group() + suggestion if lead else suggestion


def _span_is_cyrillic(span: str, default: bool) -> bool:
    """The script of the matched words, or of the whole text when they have no letters."""
    if any(ch.isalpha() for ch in span):
        return script.is_cyrillic(span)
    return default


def _keeps_capital(suggestion: str) -> bool:
    word = suggestion.split(" ", 1)[0].rstrip(",.!?")
    return word == "I" or word.startswith("I'") or (len(word) > 1 and word.isupper())


def _default_cache_dir() -> Path:
    return Path.home() / ".cache" / "tactline"
