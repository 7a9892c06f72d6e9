"""Coach speed, memory and load time, printed as figures and ratios.

    .venv/bin/python bench/coach.py [--rounds N]

Per-message ``check`` time on the real corpora against spaCy's blank
tokenizer on the same messages in the same run (target: ratio <= 2.0);
the same with synthetic rule sets of 10 to 5,000 rules (target: <= 3x the
tokenizer at 5,000); peak RSS with all four languages loaded (target
<= 250 MB); cold load time with a warm compile cache (target <= 3 s).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from coach import Coach  # noqa: E402

CORPORA = Path(os.environ.get("TACTLINE_CORPORA") or ROOT.parent / "shared" / "corpora")


def corpus(name: str) -> list[str]:
    with (CORPORA / name).open(encoding="utf-8") as fh:
        return [json.loads(line)["text"] for line in fh if line.strip()]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def time_per_message(coach: Coach, texts: list[str], lang: str, role: str, rounds: int):
    tokenizer = coach._pack(lang).tokenizer
    check_times: list[float] = []
    tok_times: list[float] = []
    clock = time.perf_counter
    for text in texts:  # warm both: spaCy's tokenizer caches what it has seen
        tokenizer(text)
        coach.check(text, lang, role)
    for _ in range(rounds):
        for text in texts:
            t0 = clock()
            tokenizer(text)
            t1 = clock()
            coach.check(text, lang, role)
            t2 = clock()
            tok_times.append(t1 - t0)
            check_times.append(t2 - t1)
    return check_times, tok_times


def report(label: str, check_times: list[float], tok_times: list[float]) -> float:
    med_c, med_t = statistics.median(check_times), statistics.median(tok_times)
    p99_c, p99_t = percentile(check_times, 0.99), percentile(tok_times, 0.99)
    ratio = med_c / med_t
    print(
        f"  {label:<34} check median {med_c * 1e6:7.1f} µs  p99 {p99_c * 1e6:7.1f} µs | "
        f"tokenizer median {med_t * 1e6:6.1f} µs  p99 {p99_t * 1e6:6.1f} µs | ratio {ratio:4.2f}"
    )
    return ratio


def synthetic_rules(root: Path, n: int, vocab: list[str], seed: int = 7) -> None:
    """``n`` English rules, half phrases and half token patterns, on corpus words."""
    rng = random.Random(seed)
    out = root / "en"
    out.mkdir(parents=True)
    lines = ["lang: en", "category: dont_know", "role: agent", "rules:"]
    for i in range(n):
        words = rng.sample(vocab, 3)
        lines.append(f"  - id: en.dont_know.synthetic_{i}")
        lines.append("    severity: warning")
        lines.append("    match:")
        if i % 2:
            lines.append(f"      - phrase: {json.dumps(' '.join(words[:2]))}")
        else:
            lines.append(
                f"      - pattern: [{{LOWER: {json.dumps(words[0])}}}, {{OP: '?'}}, "
                f"{{LOWER: {{IN: [{json.dumps(words[1])}, {json.dumps(words[2])}]}}}}]"
            )
        lines.append("    message: Synthetic.")
        lines.append("    suggestions: [x]")
    (out / "dont_know.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")


def measure_in_fresh_process() -> dict[str, float]:
    code = (
        "import time, resource, json, sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "t = time.perf_counter()\n"
        "from coach import Coach\n"
        "coach = Coach.load(check_examples=False)\n"
        "load = time.perf_counter() - t\n"
        "for lang in coach.languages:\n"
        "    coach.check('Ne znam, to nije moj posao. I don\\'t know.', lang, 'agent')\n"
        "rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "print(json.dumps({'load_s': load, 'peak_rss_mb': rss}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"loading the rules failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    print("coach benchmark")
    Coach.load(check_examples=False)  # warms the compile cache
    fresh = measure_in_fresh_process()
    print(f"  cold load, warm cache, all languages   {fresh['load_s']:.2f} s   (target <= 3 s)")
    rss = fresh["peak_rss_mb"]
    print(f"  peak RSS, all four languages loaded    {rss:.0f} MB  (target <= 250 MB)")

    coach = Coach.load(check_examples=False)
    agent = corpus("twitter-care-agent.jsonl")
    customer = corpus("twitter-care-customer.jsonl")
    print(f"per-message check vs blank tokenizer, {args.rounds} rounds (target ratio <= 2.0)")
    ratios = [
        report(
            "agent corpus (en, agent rules)",
            *time_per_message(coach, agent, "en", "agent", args.rounds),
        ),
        report(
            "customer corpus (en, customer cues)",
            *time_per_message(coach, customer, "en", "customer", args.rounds),
        ),
    ]

    vocab = sorted({w.lower() for t in agent + customer for w in t.split() if w.isalpha()})
    print("synthetic rule sets on the agent corpus (target: <= 3x the tokenizer at 5,000)")
    for n in (10, 100, 1000, 5000):
        with tempfile.TemporaryDirectory() as tmp:
            synthetic_rules(Path(tmp), n, vocab)
            synthetic = Coach.load(tmp, check_examples=False, languages=["en"])
            ratios.append(
                report(f"{n:>5} rules", *time_per_message(synthetic, agent, "en", "agent", 1))
            )
    print(f"worst ratio to the tokenizer: {max(ratios):.2f}")


if __name__ == "__main__":
    main()
