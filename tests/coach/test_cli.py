"""``tactline check`` and ``tactline rules`` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def tactline(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


def test_jsonl_one_output_line_per_input_line_in_order() -> None:
    lines = [
        {"id": "x1", "text": "Ne znam.", "lang": "sr", "role": "agent"},
        "this is not json",
        {"id": "x3", "text": "Thanks for waiting, your refund is on its way."},
        {"id": "x4", "text": "I don't know.", "lang": "de"},
        {"id": "x5", "text": "I don't know."},
    ]
    stdin = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n"
    result = tactline("check", "--format", "jsonl", "--lang", "en", stdin=stdin)
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert [o.get("id") for o in out] == ["x1", None, "x3", "x4", "x5"]
    [flag] = out[0]["flags"]
    assert set(flag) == {
        "rule",
        "category",
        "severity",
        "start",
        "end",
        "text",
        "message",
        "suggestions",
    }
    assert flag["category"] == "dont_know" and flag["start"] == 0 and flag["text"] == "Ne znam"
    assert "error" in out[1] and "JSON" in out[1]["error"]
    assert out[2]["flags"] == []
    assert "unknown language 'de'" in out[3]["error"]
    assert out[4]["flags"][0]["category"] == "dont_know"
    assert result.returncode == 1


def test_text_output_names_place_severity_and_rule() -> None:
    result = tactline("check", "--lang", "en", stdin="Hello.\nSorry, I don't know.\n")
    assert result.returncode == 1
    assert "<stdin>:2:8  warning" in result.stdout
    assert "(en.dont_know." in result.stdout


def test_clean_text_exits_zero() -> None:
    result = tactline("check", "--lang", "en", stdin="Let me find out for you.\n")
    assert (result.returncode, result.stdout) == (0, "")


def test_min_severity_filters_and_sets_exit_code() -> None:
    result = tactline("check", "--lang", "en", "--min-severity", "alert", stdin="I don't know.\n")
    assert (result.returncode, result.stdout) == (0, "")


def test_unknown_language_is_a_usage_error() -> None:
    result = tactline("check", "--lang", "xx", stdin="hello\n")
    assert result.returncode == 2
    assert "unknown language 'xx'" in result.stderr and "en, sr, hr, sl" in result.stderr


@pytest.mark.parametrize("command", ["test", "lint"])
def test_rules_commands_pass_on_the_project_rules(command: str) -> None:
    result = tactline("rules", command, "rules")
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_lint_reports_a_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "en"
    bad.mkdir()
    (bad / "blame.yaml").write_text("lang: en\ncategory: blame\nrole: agent\nrules: []\n")
    result = tactline("rules", "lint", str(tmp_path))
    assert result.returncode == 1
    assert "blame.yaml:4:" in result.stderr and "rules" in result.stderr
