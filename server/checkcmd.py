"""``tactline check`` and ``tactline rules``: the coach on the command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from coach import LANGUAGES, Coach, CoachError, Flag, RuleErrors
from coach.taxonomy import SEVERITY_RANK

EXIT_CLEAN, EXIT_FLAGGED, EXIT_USAGE = 0, 1, 2


def _load(rules: str | None, languages: tuple[str, ...] | None = None) -> Coach:
    """Compile the rules; only ``languages`` when given, so that an error in
    another language's files does not stop this check."""
    root, only = _rules_root(rules)
    if only is not None:
        languages = only if languages is None else tuple(code for code in languages if code in only)
    if languages is None:
        return Coach.load(root, check_examples=False)
    return Coach.load(root, check_examples=False, languages=languages)


def _rules_root(directory: str | None) -> tuple[Path, tuple[str, ...] | None]:
    """``rules`` or ``rules/en``: the root and, for one language, that language."""
    from coach import DEFAULT_RULES_DIR, LANGUAGES

    path = Path(directory) if directory else DEFAULT_RULES_DIR
    if path.name in LANGUAGES and not (path / "en").is_dir():
        return path.parent, (path.name,)
    return path, None


def _inputs(files: list[str]) -> Iterator[tuple[str, TextIO]]:
    if not files:
        yield "<stdin>", sys.stdin
        return
    for name in files:
        with open(name, encoding="utf-8") as fh:
            yield name, fh


def _line_col(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, col


def run_check(args: argparse.Namespace) -> int:
    from coach import LANGUAGES, normalize_language

    lang = normalize_language(args.lang)
    if lang is None:
        print(
            f"tactline check: [C001] unknown language {args.lang!r}; known: {', '.join(LANGUAGES)}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        # jsonl lines may name any language; other formats check one.
        coach = _load(args.rules, None if args.format == "jsonl" else (lang,))
        coach.check("", args.lang, args.role)
    except (CoachError, ValueError) as exc:
        print(f"tactline check: {exc}", file=sys.stderr)
        return EXIT_USAGE
    floor = SEVERITY_RANK[args.min_severity]
    worst = -1
    bad_input = False
    out = sys.stdout
    try:
        for name, stream in _inputs(args.files):
            if args.format == "jsonl":
                for raw in stream:
                    if not raw.strip():
                        continue
                    result, rank = _check_jsonl_line(coach, raw, args, floor)
                    bad_input = bad_input or "error" in result
                    worst = max(worst, rank)
                    out.write(json.dumps(result, ensure_ascii=False) + "\n")
                continue
            text = stream.read()
            flags = [
                f
                for f in coach.check(text, args.lang, args.role)
                if SEVERITY_RANK[f.severity] >= floor
            ]
            worst = max([worst, *(SEVERITY_RANK[f.severity] for f in flags)])
            if args.format == "json":
                out.write(
                    json.dumps(
                        {"file": name, "flags": [f.model_dump() for f in flags]}, ensure_ascii=False
                    )
                    + "\n"
                )
            else:
                _write_text(out, name, text, flags)
    except OSError as exc:
        print(f"tactline check: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if worst >= 0:
        return EXIT_FLAGGED
    return EXIT_USAGE if bad_input else EXIT_CLEAN


def _check_jsonl_line(
    coach: Coach, raw: str, args: argparse.Namespace, floor: int
) -> tuple[dict[str, Any], int]:
    try:
        item = json.loads(raw)
    except ValueError as exc:
        return {"id": None, "error": f"not valid JSON: {exc}"}, -1
    if not isinstance(item, dict):
        return {"id": None, "error": "expected a JSON object"}, -1
    ident = item.get("id")
    text = item.get("text")
    if not isinstance(text, str):
        return {"id": ident, "error": "missing or non-string 'text'"}, -1
    lang = item.get("lang", args.lang)
    role = item.get("role", args.role)
    try:
        flags = coach.check(text, str(lang), str(role))
    except CoachError as exc:
        return {"id": ident, "error": str(exc)}, -1
    flags = [f for f in flags if SEVERITY_RANK[f.severity] >= floor]
    rank = max((SEVERITY_RANK[f.severity] for f in flags), default=-1)
    return {"id": ident, "flags": [f.model_dump() for f in flags]}, rank


def _write_text(out: TextIO, name: str, text: str, flags: list[Flag]) -> None:
    for f in flags:
        line, col = _line_col(text, f.start)
        out.write(f"{name}:{line}:{col}  {f.severity:<7}  {f.message}  ({f.rule})\n")
        if f.text:
            out.write(f"    {f.text!r}")
            if f.suggestions:
                out.write(f" → {f.suggestions[0]!r}")
            out.write("\n")


def run_rules_lint(args: argparse.Namespace) -> int:
    root, langs = _rules_root(args.dir)
    try:
        coach = Coach.load(root, check_examples=False, languages=langs or LANGUAGES)
    except RuleErrors as exc:
        for err in exc.errors:
            print(err, file=sys.stderr)
        return EXIT_FLAGGED
    print(f"{len(coach.rules)} rules in {', '.join(coach.languages)}: ok")
    return EXIT_CLEAN


def run_rules_test(args: argparse.Namespace) -> int:
    root, langs = _rules_root(args.dir)
    try:
        coach = Coach.load(root, check_examples=False, languages=langs or LANGUAGES)
    except RuleErrors as exc:
        for err in exc.errors:
            print(err, file=sys.stderr)
        return EXIT_FLAGGED
    failures = coach.test_examples()
    total = sum(len(r.flag_examples) + len(r.pass_examples) for r in coach.rules)
    for failure in failures:
        print(failure)
    print(f"{total - len(failures)}/{total} examples behave ({len(coach.rules)} rules)")
    return EXIT_FLAGGED if failures else EXIT_CLEAN
