"""Filling ``{slot}`` names in acknowledgement scripts.

``[ about {topic}]`` is optional text: it stays when every slot inside is
known and disappears otherwise; ``[ {topic}| this]`` says what stands in
its place then ("Let me look into this right now"). A bare unknown slot is
dropped with the space before it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

SLOT_NAMES = frozenset(
    {
        "customer_name",
        "agent_name",
        "company",
        "topic",
        "topic_nom",
        "topic_gen",
        "topic_acc",
        "topic_ins",
    }
)
MAX_SLOT_LENGTH = 80

_OPTIONAL = re.compile(r"\[([^\[\]]*)\]")
_SLOT = re.compile(r"\{(\w+)\}")
_BARE_SLOT = re.compile(r"\s?\{(\w+)\}")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.!?;:])")
_DOUBLED_PUNCT = re.compile(r"([,;:])\1+")
_LEADING_PUNCT = re.compile(r"^\s*[,;:]\s*")


def _clean(values: Mapping[str, str | None] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in (values or {}).items():
        if value is None:
            continue
        text = " ".join(str(value).split())[:MAX_SLOT_LENGTH]
        if text:
            out[name] = text
    return out


@dataclass(frozen=True, slots=True)
class Script:
    """A template with its slot names, and its text when none of them is known.

    Most scripts are offered with few or none of their slots known; that
    text is worked out once, when the rules are compiled.
    """

    template: str
    names: frozenset[str] = field(init=False)
    bare: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", frozenset(_SLOT.findall(self.template)))
        object.__setattr__(self, "bare", fill(self.template))

    def fill(self, values: Mapping[str, str | None] | None = None) -> str:
        if not values or self.names.isdisjoint(
            name for name, value in values.items() if value is not None
        ):
            return self.bare
        return fill(self.template, values)


def fill(template: str, values: Mapping[str, str | None] | None = None) -> str:
    if "{" in template or "[" in template:
        template = _fill_slots(template, _clean(values))
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", template)
    text = _DOUBLED_PUNCT.sub(r"\1", text)
    text = _LEADING_PUNCT.sub("", text)
    return " ".join(text.split())


def _fill_slots(template: str, known: dict[str, str]) -> str:
    def optional(m: re.Match[str]) -> str:
        inner, _, otherwise = m.group(1).partition("|")
        names = _SLOT.findall(inner)
        if all(n in known for n in names):
            return _SLOT.sub(lambda s: known[s.group(1)], inner)
        return otherwise

    text = _OPTIONAL.sub(optional, template)
    return _BARE_SLOT.sub(
        lambda m: (
            m.group(0).replace("{" + m.group(1) + "}", known[m.group(1)])
            if m.group(1) in known
            else ""
        ),
        text,
    )


def slot_names(template: str) -> set[str]:
    return set(_SLOT.findall(template))
