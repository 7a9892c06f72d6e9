"""Errors the coach raises, each with a code."""

from __future__ import annotations

from pathlib import Path


class CoachError(Exception):
    """Base class of the coach's errors."""


class UnknownLanguageError(CoachError, ValueError):
    def __init__(self, lang: str, known: tuple[str, ...]) -> None:
        self.lang = lang
        self.known = known
        super().__init__(f"[C001] unknown language {lang!r}; known: {', '.join(known)}")


class UnknownRoleError(CoachError, ValueError):
    def __init__(self, role: str) -> None:
        super().__init__(f"[C002] unknown role {role!r}; known: agent, customer")


class RuleError(CoachError):
    """A rule file is wrong: names the file, the line and the rule."""

    def __init__(
        self, code: str, path: Path | str, line: int | None, rule: str | None, what: str
    ) -> None:
        self.code = code
        self.path = str(path)
        self.line = line
        self.rule = rule
        self.what = what
        where = self.path if line is None else f"{self.path}:{line}"
        rule_part = f" rule {rule}:" if rule else ""
        super().__init__(f"{where}:{rule_part} {what} [{code}]")


class RuleErrors(CoachError):
    """Every error found while loading a rules directory; nothing was loaded."""

    def __init__(self, errors: list[RuleError]) -> None:
        self.errors = errors
        lines = "\n".join(str(e) for e in errors)
        super().__init__(f"{len(errors)} error(s) in rule files:\n{lines}")
