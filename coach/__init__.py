"""Tactline's phrasing coach: a rule engine with no I/O beyond reading its rules.

>>> coach = Coach.load()
>>> [f.category for f in coach.check("I don't know.", "en", "agent")]
['dont_know']
"""

from coach.engine import (
    DEFAULT_MAX_CHARS,
    DEFAULT_RULES_DIR,
    FLAG_LIST,
    Coach,
    ExampleFailure,
    Flag,
    Rule,
)
from coach.errors import CoachError, RuleError, RuleErrors, UnknownLanguageError, UnknownRoleError
from coach.taxonomy import LANGUAGES, normalize_language

__all__ = [
    "DEFAULT_MAX_CHARS",
    "DEFAULT_RULES_DIR",
    "FLAG_LIST",
    "LANGUAGES",
    "Coach",
    "CoachError",
    "ExampleFailure",
    "Flag",
    "Rule",
    "RuleError",
    "RuleErrors",
    "UnknownLanguageError",
    "UnknownRoleError",
    "normalize_language",
]
