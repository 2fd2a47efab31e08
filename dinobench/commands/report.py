"""``dinobench report``: leaderboard, per-task tables and plots (Markdown, CSV, HTML), JSONL baselines."""

from __future__ import annotations

import argparse

from dinobench.utils.paths import default_results


REPORT_EPILOG = """Results share a leaderboard column only when task, protocol version and protocol hash (resolved
config + dataset fingerprint) match; other groups get their own column, e.g. "digits-knn [cfg 1a2b3c4]",
with a note saying what differs. Re-runs of one seed count once (the newest); seeds are averaged.

examples:
  dinobench report --output report                       # scan ./outputs
  dinobench report outputs/ leaderboards/baseline.jsonl --output report --format md,html
  dinobench report outputs/ --jsonl leaderboards/baseline.jsonl   # freeze a baseline for `check`
"""


def configure(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``dinobench report``."""
    parser.epilog = REPORT_EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("paths", nargs="*", metavar="PATH",
                          help="results folders (scanned for result.json), result.json files or .jsonl baselines "
                               "(default: ./outputs or $DINOBENCH_OUTPUT)")
    parser.add_argument("--output", default=None, metavar="DIR",
                          help="write leaderboard.md, leaderboard.csv, results.csv and report.html here")
    parser.add_argument("--format", default="md,csv,html", help="comma-separated subset of md,csv,html")
    parser.add_argument("--title", default="dinobench leaderboard", help="report title")
    parser.add_argument("--jsonl", default=None, metavar="FILE",
                          help="freeze the results shown (newest per seed) into a JSONL baseline for `dinobench check`")


def run(args: argparse.Namespace) -> int:
    """Scan results, print the leaderboard, write the report files and/or a JSONL baseline."""
    from dinobench.errors import ConfigError, DataError
    from dinobench.leaderboard import build_leaderboard, scan
    from dinobench.report import FORMATS, leaderboard_markdown, write_report
    from dinobench.results import write_jsonl

    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ConfigError(f"--format {args.format!r}: expected a comma-separated subset of {','.join(FORMATS)}")
    if args.output is None and args.jsonl is None:
        raise ConfigError("report: nothing to write; pass --output DIR (report files) and/or --jsonl FILE (baseline)")
    paths = args.paths or default_results()
    df = scan(paths)
    if df.empty:
        raise DataError(f"no result records found in {', '.join(map(str, paths))}; run `dinobench run` first "
                        "or pass the folders/.jsonl files holding them")
    lb = build_leaderboard(df)
    print(leaderboard_markdown(lb))
    print(f"{len(df)} results, {len(lb.rows)} backbones x {len(lb.columns)} task columns")
    written = []
    if args.jsonl is not None:
        frozen = lb.runs.sort_values(["task", "column", "model", "weights_id", "seed"])["record"].tolist()
        written.append(write_jsonl(args.jsonl, frozen))
    if args.output is not None:
        written += write_report(df, lb, args.output, formats, args.title)
    for path in written:
        print(f"wrote {path}")
    return 0
