"""The coach's vocabulary: languages, roles, severities and categories."""

from __future__ import annotations

from typing import Literal

LANGUAGES: tuple[str, ...] = ("en", "sr", "hr", "sl")

Role = Literal["agent", "customer"]
Severity = Literal["info", "warning", "alert"]

SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "alert": 2}

#: Flagged on one agent message.
AGENT_CATEGORIES: tuple[str, ...] = (
    "dont_know",
    "not_my_job",
    "policy_refusal",
    "absolute_no",
    "dismissive",
    "blame",
    "overpromise",
    "sensitive_data_request",
)

#: Cues on one customer message.
CUSTOMER_CATEGORIES: tuple[str, ...] = ("frustration", "repeat_contact", "escalation_request")

#: Need the conversation or the clock; see coach.conversation.
CONVERSATION_CATEGORIES: tuple[str, ...] = (
    "upsell_when_upset",
    "hold_without_update",
    "missing_introduction",
    "missing_thanks",
)

#: Rule files may use these; ``upsell_when_upset`` rules only name offers, and
#: the conversation coach decides when an offer is a problem.
RULE_CATEGORIES: tuple[str, ...] = AGENT_CATEGORIES + CUSTOMER_CATEGORIES + ("upsell_when_upset",)

#: Said by the coach itself when a text is longer than it checks.
TRUNCATED = "text_truncated"

ALL_CATEGORIES: tuple[str, ...] = (
    AGENT_CATEGORIES + CUSTOMER_CATEGORIES + CONVERSATION_CATEGORIES + (TRUNCATED,)
)

LANGUAGE_ALIASES: dict[str, str] = {
    "sr-latn": "sr",
    "sr-cyrl": "sr",
    "sr-rs": "sr",
    "hr-hr": "hr",
    "sl-si": "sl",
    "en-us": "en",
    "en-gb": "en",
}


def normalize_language(lang: str) -> str | None:
    """Map ``sr-Latn``, ``EN`` and the like to a coach language, or None."""
    key = lang.strip().lower().replace("_", "-")
    if key in LANGUAGES:
        return key
    if key in LANGUAGE_ALIASES:
        return LANGUAGE_ALIASES[key]
    base = key.split("-", 1)[0]
    return base if base in LANGUAGES else None
