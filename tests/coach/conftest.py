from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from coach import Coach

RulesWriter = Callable[[dict[str, str]], Path]


@pytest.fixture
def write_rules(tmp_path: Path) -> RulesWriter:
    """Write ``{"en/dont_know.yaml": "...yaml..."}`` under a fresh rules dir."""

    def write(files: dict[str, str]) -> Path:
        root = tmp_path / "rules"
        for name, body in files.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(body), encoding="utf-8")
        return root

    return write


@pytest.fixture(scope="session")
def coach() -> Coach:
    """The project's own rule packs, examples checked."""
    return Coach.load()
