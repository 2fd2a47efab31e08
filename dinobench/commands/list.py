"""``dinobench list [SECTION] [--json]``: the registered entries, as tables or JSON (no torch import)."""

from __future__ import annotations

import argparse
import json

from dinobench.listing import LIST_SECTIONS, list_rows, text_table


def configure(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``dinobench list``."""
    parser.add_argument("what", nargs="?", default="all",
                        choices=["all", *LIST_SECTIONS])
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--include-path", action="append", default=None, metavar="DIR",
                        help="also list the task files in DIR (repeatable; $DINOBENCH_TASK_DIRS)")


def run(args: argparse.Namespace) -> int:
    """Print registered entries as tables (or JSON)."""
    sections = LIST_SECTIONS if args.what == "all" else [args.what]
    payload = {}
    for section in sections:
        rows, columns = list_rows(section)
        payload[section] = rows
        if not args.json:
            if len(sections) > 1:
                print(f"\n{section}:")
            print(text_table(rows, columns))
    if args.json:
        print(json.dumps(payload if len(sections) > 1 else payload[sections[0]], indent=2))
    return 0
