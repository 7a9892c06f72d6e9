"""The worked examples of docs/rules.md are valid rule files whose examples behave."""

from __future__ import annotations

import re
from pathlib import Path

from coach import Coach

DOC = Path(__file__).resolve().parents[2] / "docs" / "rules.md"


def test_worked_examples_in_the_rules_guide_load_and_behave(tmp_path: Path) -> None:
    blocks = re.findall(
        r"```yaml\n# (rules/[a-z]{2}/[a-z_]+\.yaml)\n(.*?)```", DOC.read_text(), re.S
    )
    assert {path.split("/")[1] for path, _ in blocks} == {"en", "sr", "hr", "sl"}
    for path, body in blocks:
        target = tmp_path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(body, encoding="utf-8")
    coach = Coach.load(tmp_path / "rules", cache_dir=tmp_path / "cache")
    assert len(coach.rules) == len(blocks)
