"""``dinobench check --baseline FILE``: the CI gate, exit 1 on regressed or missing results."""

from __future__ import annotations

import argparse
import sys

from dinobench.listing import text_table
from dinobench.utils.paths import default_results


CHECK_EPILOG = """For every (backbone, weights, task, seed) of the baseline, the newest result with the same task,
protocol version and protocol hash is compared on the baseline's main metric (direction-aware):
  improved        better by more than the tolerance
  same            within the tolerance (default 1e-6 absolute)
  regressed       worse by more than the tolerance               -> exit 1
  missing         no result for that backbone/weights/task/seed  -> exit 1
  not-comparable  results exist, but with another protocol version/hash (the note says what changed;
                  a warning on stderr)                        -> exit 1 only with --strict
Exit 0 otherwise; 2 on bad input (missing or malformed files, bad --tolerance). Tolerances: METRIC=ABS, or
TASK:METRIC=ABS for one task (the most specific wins: TASK:METRIC, METRIC, TASK:*, *).

examples:
  dinobench check --baseline leaderboards/baseline.jsonl
  dinobench check --baseline leaderboards/baseline.jsonl --results outputs/ --tolerance top1=0.5 '*=0.01'
  dinobench check --baseline leaderboards/baseline.jsonl --strict --tolerance top1=0.5 digits-logreg:top1=2
"""


def _parse_tolerances(items: list[str]) -> dict[str, float]:
    from dinobench.errors import ConfigError

    tolerances = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            tol = float(value)
        except ValueError:
            tol = -1.0
        if not sep or not name or not 0 <= tol < float("inf"):  # an infinite tolerance would switch the gate off
            raise ConfigError(f"--tolerance {item!r}: expected METRIC=ABS or TASK:METRIC=ABS with ABS >= 0, "
                              "e.g. top1=0.5, digits-logreg:top1=2 or '*=0.01'")
        tolerances[name] = tol
    return tolerances


def configure(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``dinobench check``."""
    parser.epilog = CHECK_EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--baseline", required=True, metavar="FILE", help="JSONL baseline (dinobench report --jsonl)")
    parser.add_argument("--results", nargs="+", default=None, metavar="PATH",
                         help="results folders or files (default: ./outputs or $DINOBENCH_OUTPUT)")
    parser.add_argument("--tolerance", nargs="+", default=[], metavar="METRIC=ABS",
                         help="absolute tolerance per main-metric name, e.g. top1=0.5; per task: "
                              "digits-logreg:top1=2 ('*=0.1': all others; default 1e-6)")
    parser.add_argument("--strict", action="store_true",
                         help="also fail (exit 1) on not-comparable entries: results that exist only under another "
                              "protocol config or version")
    parser.add_argument("--ignore-weights-hash", action="store_true",
                         help="match checkpoints by file name only (weights retrained in CI, not bit-identical)")
    parser.add_argument("--markdown", default=None, metavar="FILE",
                         help="also append the table as Markdown to FILE (e.g. $GITHUB_STEP_SUMMARY)")


def run(args: argparse.Namespace) -> int:
    """Compare results with a baseline; exit 1 on any regressed or missing entry (``--strict``: or not-comparable)."""
    from collections import Counter
    from pathlib import Path

    from dinobench.errors import DataError
    from dinobench.leaderboard import FAILING, FAILING_STRICT, STATUSES, check, scan
    from dinobench.report import check_markdown, check_rows

    tolerances = _parse_tolerances(args.tolerance)
    if not Path(args.baseline).is_file():
        raise DataError(f"--baseline {args.baseline}: no such file; create one with "
                        "`dinobench report outputs/ --jsonl FILE`")
    baseline = scan([args.baseline])
    if baseline.empty:
        raise DataError(f"--baseline {args.baseline}: holds no result records")
    results = scan(args.results or default_results())
    rows = check(baseline, results, tolerances, match_weights_by_name=args.ignore_weights_hash)
    header, body = check_rows(rows)
    print(text_table([dict(zip(header, line)) for line in body], header))
    counts = Counter(r.status for r in rows)
    failed = any(counts[s] for s in (FAILING_STRICT if args.strict else FAILING))
    verdict = ("FAIL" if failed else "PASS") + " (" + ", ".join(f"{counts[s]} {s}" for s in STATUSES) + ")"
    if args.markdown:
        with open(args.markdown, "a", encoding="utf-8") as fh:
            fh.write(check_markdown(rows, verdict))
    print(f"check: {len(rows)} baseline entries vs {len(results)} results: {verdict}")
    if counts["not-comparable"] and not args.strict:
        print(f"dinobench check: warning: {counts['not-comparable']} baseline entries have results only under another "
              "protocol config or version (see NOTE); refresh the baseline with `dinobench report ... --jsonl`, "
              "or pass --strict to fail on them", file=sys.stderr)
    return 1 if failed else 0
