"""A bad rule file is rejected as a whole, with file, line, rule and what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from coach import Coach, RuleErrors

GOOD = """\
lang: en
category: dont_know
role: agent
rules:
  - id: en.dont_know.no_idea
    severity: warning
    match:
      - phrase: no idea
    message: Offer a next step.
    suggestions: [let me find out]
    examples:
      flag: [No idea.]
      pass: [I have an idea.]
"""


def _load_error(write_rules, tmp_path: Path, files: dict[str, str]) -> str:
    root = write_rules(files)
    with pytest.raises(RuleErrors) as info:
        Coach.load(root, cache_dir=tmp_path / "cache")
    return str(info.value)


@pytest.mark.parametrize(
    "bad, line, what",
    [
        (
            GOOD.replace("category: dont_know", "category: rudeness"),
            2,
            "unknown category 'rudeness'",
        ),
        (
            GOOD.replace("- phrase: no idea", "- pattern: [{LOWERR: no}]"),
            8,
            "unknown pattern key 'LOWERR'",
        ),
        (GOOD.replace("suggestions: [let me find out]", "suggestions: []"), 10, "suggestions"),
        (GOOD.replace("severity: warning", "severity: loud"), 6, "severity"),
        (
            GOOD.replace("flag: [No idea.]", "flag: [No clue.]"),
            12,
            "'No clue.': expected this rule to fire",
        ),
        (
            GOOD.replace("pass: [I have an idea.]", "pass: [No idea at all.]"),
            13,
            "expected no dont_know flag",
        ),
        (GOOD.replace("- phrase: no idea", "- regex: '(unclosed'"), 8, "bad regex"),
        (GOOD.replace("role: agent", "role: customer"), 5, "is for role 'agent'"),
    ],
)
def test_bad_file_names_file_line_rule_and_problem(write_rules, tmp_path, bad, line, what) -> None:
    message = _load_error(write_rules, tmp_path, {"en/dont_know.yaml": bad})
    assert f"dont_know.yaml:{line}:" in message
    assert what in message
    if "category: rudeness" not in bad:
        assert "en.dont_know.no_idea" in message


def test_yaml_syntax_error_names_the_line(write_rules, tmp_path) -> None:
    message = _load_error(
        write_rules, tmp_path, {"en/dont_know.yaml": GOOD + "  - id: [unclosed\n"}
    )
    assert "dont_know.yaml:15:" in message and "not valid YAML" in message


def test_one_bad_file_rejects_the_whole_load(write_rules, tmp_path) -> None:
    bad = GOOD.replace("en.dont_know.no_idea", "en.blame.x").replace("dont_know", "blame")
    bad = bad.replace("id: en.blame.x", "id: en.blame.x\n    colour: red")
    message = _load_error(write_rules, tmp_path, {"en/dont_know.yaml": GOOD, "en/blame.yaml": bad})
    assert "blame.yaml" in message and "colour" in message


def test_duplicate_rule_ids_are_refused(write_rules, tmp_path) -> None:
    other = GOOD.replace("no idea", "no clue").replace("No idea.", "No clue.")
    message = _load_error(
        write_rules, tmp_path, {"en/dont_know.yaml": GOOD, "en/dont_know_more.yaml": other}
    )
    assert "duplicate id" in message


def test_good_file_loads(write_rules, tmp_path) -> None:
    root = write_rules({"en/dont_know.yaml": GOOD})
    coach = Coach.load(root, cache_dir=tmp_path / "cache")
    assert [r.id for r in coach.rules] == ["en.dont_know.no_idea"]
