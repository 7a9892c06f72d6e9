"""Filling ``{slot}`` names in acknowledgement scripts.

``[ about {topic}]`` is optional text: it stays when every slot inside is
known and disappears otherwise. A bare unknown slot is dropped with the
space before it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

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


def _clean(values: Mapping[str, str | None] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in (values or {}).items():
        if value is None:
            continue
        text = " ".join(str(value).split())[:MAX_SLOT_LENGTH]
        if text:
            out[name] = text
    return out


def fill(template: str, values: Mapping[str, str | None] | None = None) -> str:
    known = _clean(values)

    def optional(m: re.Match[str]) -> str:
        inner = m.group(1)
        names = _SLOT.findall(inner)
        if all(n in known for n in names):
            return _SLOT.sub(lambda s: known[s.group(1)], inner)
        return ""

    text = _OPTIONAL.sub(optional, template)
    text = _BARE_SLOT.sub(
        lambda m: (
            m.group(0).replace("{" + m.group(1) + "}", known[m.group(1)])
            if m.group(1) in known
            else ""
        ),
        text,
    )
    text = re.sub(r"\s+([,.!?;:])", r"\1", text)
    text = re.sub(r"([,;:])\1+", r"\1", text)
    text = re.sub(r"^\s*[,;:]\s*", "", text)
    return " ".join(text.split())


def slot_names(template: str) -> set[str]:
    return set(_SLOT.findall(template))
