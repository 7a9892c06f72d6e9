"""Rule files: their schema, and reading them with line numbers for errors."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from coach.errors import RuleError
from coach.taxonomy import CUSTOMER_CATEGORIES, LANGUAGES, RULE_CATEGORIES, Role, Severity

# Token pattern keys, as in spaCy's Matcher.
STRING_KEYS = frozenset({"LOWER", "NORM", "LEMMA", "TEXT"})
FLAG_KEYS = frozenset(
    {"IS_UPPER", "IS_TITLE", "IS_PUNCT", "IS_DIGIT", "LIKE_NUM", "IS_SENT_START", "IS_SENT_END"}
)
OPS = frozenset({"?", "*", "+", "!", "1"})
LENGTH_OPS = frozenset({">=", "<=", ">", "<", "==", "!="})
VALUE_KEYS = frozenset({"IN", "NOT_IN", "REGEX"})


def _check_string_value(key: str, value: Any) -> None:
    if isinstance(value, str):
        return
    if isinstance(value, dict) and value:
        for sub, arg in value.items():
            sub_u = str(sub).upper()
            if sub_u not in VALUE_KEYS:
                raise ValueError(f"{key}: unknown operator {sub!r}; use IN, NOT_IN or REGEX")
            if sub_u == "REGEX":
                if not isinstance(arg, str):
                    raise ValueError(f"{key}: REGEX takes a string")
                try:
                    re.compile(arg)
                except re.error as exc:
                    raise ValueError(f"{key}: bad REGEX {arg!r}: {exc}") from None
            elif not (isinstance(arg, list) and arg and all(isinstance(x, str) for x in arg)):
                raise ValueError(f"{key}: {sub_u} takes a non-empty list of words")
        return
    raise ValueError(f"{key}: expected a word or {{IN: [...]}}, got {value!r}")


def _words_as_strings(value: Any) -> Any:
    """``LOWER: 100`` means the word "100": numbers in word positions become strings."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return [_words_as_strings(v) for v in value]
    if isinstance(value, dict):
        return {
            k: (v if str(k).upper() == "REGEX" else _words_as_strings(v)) for k, v in value.items()
        }
    return value


def check_token_spec(spec: Any) -> dict[str, Any]:
    """Validate one token dict of a pattern; returns it with upper-case keys."""
    if not isinstance(spec, dict):
        raise ValueError(f"a pattern token must be a mapping, got {spec!r}")
    out: dict[str, Any] = {}
    for raw_key, value in spec.items():
        key = str(raw_key).upper()
        if key in STRING_KEYS:
            value = _words_as_strings(value)
            _check_string_value(key, value)
        elif key in FLAG_KEYS:
            if not isinstance(value, bool):
                raise ValueError(f"{key} takes true or false")
        elif key == "LENGTH":
            if (
                isinstance(value, int)
                and not isinstance(value, bool)
                or (
                    isinstance(value, dict)
                    and value
                    and all(k in LENGTH_OPS and isinstance(v, int) for k, v in value.items())
                )
            ):
                pass
            else:
                raise ValueError(f"LENGTH takes a number or {{'>=': n}}, got {value!r}")
        elif key == "OP":
            if value not in OPS:
                raise ValueError(f"OP must be one of ? * + !, got {value!r}")
        else:
            raise ValueError(
                f"unknown pattern key {raw_key!r}; known: "
                + ", ".join(sorted(STRING_KEYS | FLAG_KEYS | {"LENGTH", "OP"}))
            )
        out[key] = value
    return out


class MatchSpec(BaseModel):
    """One way a rule (or an exception) matches: a phrase, a token pattern or a regex."""

    model_config = ConfigDict(extra="forbid")

    phrase: str | None = None
    pattern: list[dict[str, Any]] | None = None
    regex: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> MatchSpec:
        given = [k for k in ("phrase", "pattern", "regex") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("each match entry needs exactly one of phrase, pattern, regex")
        return self

    @field_validator("phrase")
    @classmethod
    def _phrase_not_blank(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("phrase is empty")
        return v

    @field_validator("pattern")
    @classmethod
    def _pattern_tokens(cls, v: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("pattern is empty")
        tokens = [check_token_spec(t) for t in v]
        if all(t.get("OP") in ("?", "*") for t in tokens):
            raise ValueError("pattern can match nothing: every token is optional")
        return tokens

    @field_validator("regex")
    @classmethod
    def _regex_compiles(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"bad regex {v!r}: {exc}") from None
        return v


class Examples(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    flag: list[str] = Field(default_factory=list)
    pass_: list[str] = Field(default_factory=list, alias="pass")


class RuleSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: str = Field(pattern=r"^[a-z]{2}\.[a-z_]+\.[a-z0-9_]+$")
    category: str | None = None
    role: Role | None = None
    severity: Severity
    match: list[MatchSpec] = Field(min_length=1)
    except_: list[MatchSpec] = Field(default_factory=list, alias="except")
    message: str = Field(min_length=1)
    suggestions: list[str] = Field(min_length=1)
    examples: Examples = Field(default_factory=Examples)

    @field_validator("suggestions")
    @classmethod
    def _no_blank_suggestion(cls, v: list[str]) -> list[str]:
        if any(not s.strip() for s in v):
            raise ValueError("a suggestion is empty")
        return v


class RuleFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lang: str
    category: str
    role: Role
    rules: list[RuleSpec] = Field(min_length=1)

    @field_validator("lang")
    @classmethod
    def _known_lang(cls, v: str) -> str:
        if v not in LANGUAGES:
            raise ValueError(f"unknown language {v!r}; known: {', '.join(LANGUAGES)}")
        return v

    @field_validator("category")
    @classmethod
    def _known_category(cls, v: str) -> str:
        if v not in RULE_CATEGORIES:
            raise ValueError(f"unknown category {v!r}; known: {', '.join(RULE_CATEGORIES)}")
        return v


_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present


class RuleLoader(_BaseLoader):  # type: ignore[misc]
    """YAML 1.2 booleans: only true and false. In YAML 1.1 "no", "yes", "on"
    and "off" are booleans, and "no" is a word rules need."""


RuleLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def parse_yaml(text: str) -> tuple[Any, yaml.Node | None]:
    """The data of a YAML document and its node tree (for line numbers), parsed once."""
    loader = RuleLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()
    return data, node


RuleLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def node_line(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """The 1-based line of the deepest node that ``loc`` reaches."""
    line = None if node is None else node.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.value == part:
                    node = value_node
                    break
            else:
                break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                break
            node = node.value[part]
        else:
            break
        line = node.start_mark.line + 1
    return line


def _rule_id_at(data: Any, loc: tuple[int | str, ...]) -> str | None:
    if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
        try:
            rule = data["rules"][loc[1]]
            return str(rule.get("id")) if isinstance(rule, dict) and rule.get("id") else None
        except (KeyError, IndexError, TypeError):
            return None
    return None


def rule_line(node: yaml.Node | None, index: int) -> int | None:
    return node_line(node, ("rules", index))


M = TypeVar("M", bound=BaseModel)


def _read_validated(path: Path, model: type[M], expected: str) -> tuple[M, Any, yaml.Node | None]:
    """Read, parse and validate one YAML file as ``model``; raises RuleError
    naming the file, the line and (for rule files) the rule."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RuleError("R001", path, None, None, f"cannot read: {exc}") from None
    try:
        data, node = parse_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise RuleError("R002", path, line, None, f"not valid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise RuleError("R003", path, 1, None, f"expected a mapping with {expected}")
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        where = ".".join(str(p) for p in loc)
        msg = err["msg"].removeprefix("Value error, ")
        raise RuleError(
            "R004", path, node_line(node, loc), _rule_id_at(data, loc), f"{where}: {msg}"
        ) from None
    return parsed, data, node


def read_rule_file(path: Path) -> tuple[RuleFile, yaml.Node | None]:
    """Parse and validate one rule file; raises RuleError naming file, line and rule."""
    parsed, _, node = _read_validated(path, RuleFile, "lang, category, role, rules")
    # Consistency between the file and its rules.
    for i, rule in enumerate(parsed.rules):
        line = rule_line(node, i)
        category = rule.category or parsed.category
        if category != parsed.category:
            raise RuleError(
                "R005",
                path,
                line,
                rule.id,
                f"category {category!r} differs from the file's {parsed.category!r}",
            )
        role = rule.role or parsed.role
        expected_role = "customer" if category in CUSTOMER_CATEGORIES else "agent"
        if role != expected_role:
            raise RuleError(
                "R006", path, line, rule.id, f"category {category!r} is for role {expected_role!r}"
            )
        prefix = f"{parsed.lang}.{parsed.category}."
        if not rule.id.startswith(prefix):
            raise RuleError("R007", path, line, rule.id, f"rule id must start with {prefix!r}")
    return parsed, node


# Conversation data: rules/<lang>/conversation.yaml

CONVERSATION_FILE = "conversation.yaml"
NUDGE_KINDS: dict[str, str] = {
    "hold_without_update": "hold_without_update",
    "first_response": "hold_without_update",
    "missing_introduction": "missing_introduction",
    "missing_thanks": "missing_thanks",
    "upsell_when_upset": "upsell_when_upset",
}
PHRASE_KINDS = ("introduces", "asks_name", "thanks")


class NudgeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    severity: Severity = "info"
    message: str = Field(min_length=1)
    suggestions: list[str] = Field(min_length=1)


class PhraseSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    match: list[MatchSpec] = Field(min_length=1)
    examples: Examples = Field(default_factory=Examples)


TOPIC_CASES = ("nom", "gen", "acc", "ins")


class TopicSpec(BaseModel):
    """What a customer's words are about, as the ``{topic}`` of scripts ("your order").

    In sr, hr and sl a script needs the topic in the case its words govern:
    ``zbog {topic_gen}``, ``proveravam {topic_acc}``, ``u vezi sa {topic_ins}``;
    ``topic`` then gives each case, ``{nom: …, gen: …, acc: …, ins: …}``.
    """

    model_config = ConfigDict(extra="forbid")

    topic: str | dict[str, str]
    match: list[MatchSpec] = Field(min_length=1)

    @field_validator("topic")
    @classmethod
    def _cases(cls, v: str | dict[str, str]) -> str | dict[str, str]:
        if isinstance(v, dict):
            unknown = sorted(set(v) - set(TOPIC_CASES))
            if unknown or "nom" not in v:
                raise ValueError(f"topic cases are {', '.join(TOPIC_CASES)} (nom required)")
        return v

    def slots(self) -> dict[str, str]:
        """``topic`` and ``topic_<case>`` slot values."""
        forms = {"nom": self.topic} if isinstance(self.topic, str) else dict(self.topic)
        out = {"topic": forms["nom"]}
        for case in TOPIC_CASES:
            out[f"topic_{case}"] = forms.get(case, forms["nom"])
        return out


class ConversationFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lang: str
    nudges: dict[str, NudgeSpec]
    phrases: dict[str, PhraseSet]
    #: First match wins, in file order.
    topics: list[TopicSpec] = Field(default_factory=list)

    @field_validator("nudges", "phrases")
    @classmethod
    def _exactly_the_known_kinds(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        known = NUDGE_KINDS if info.field_name == "nudges" else PHRASE_KINDS
        missing = sorted(set(known) - set(v))
        unknown = sorted(set(v) - set(known))
        if missing or unknown:
            raise ValueError(f"missing {missing}, unknown {unknown}")
        return v


def read_conversation_file(path: Path) -> tuple[ConversationFile, yaml.Node | None]:
    parsed, _, node = _read_validated(path, ConversationFile, "lang, nudges, phrases")
    return parsed, node
