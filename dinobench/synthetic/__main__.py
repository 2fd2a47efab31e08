"""``python -m dinobench.synthetic KIND OUT_DIR``: write a registered synthetic dataset, print its --data-root."""

from __future__ import annotations

import argparse
import sys

from dinobench.errors import DinobenchError
from dinobench.plugin_manager import get_registries
from dinobench.registry import resolve_object


def _parse_size(text: str) -> int | tuple[int, int]:
    if "x" in text.lower():
        h, w = text.lower().split("x", 1)
        return int(h), int(w)
    return int(text)


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and write the dataset (kinds: every registered synthetic writer)."""
    writers = get_registries().synthetic_writers
    parser = argparse.ArgumentParser(prog="python -m dinobench.synthetic",
                                     description="Write a tiny procedural dataset in a real layout.")
    parser.add_argument("kind", choices=writers.names())
    parser.add_argument("out_dir")
    parser.add_argument("--n-train", type=int, default=16)
    parser.add_argument("--n-val", type=int, default=8)
    parser.add_argument("--size", type=_parse_size, default=None, help="S (square) or HxW; default per kind")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.n_train < 1 or args.n_val < 1:
        parser.error("--n-train and --n-val must be >= 1")
    entry = writers.get(args.kind)
    try:
        path = resolve_object(entry.writer)(args.out_dir, n_train=args.n_train, n_val=args.n_val,
                                             size=args.size if args.size is not None else entry.size, seed=args.seed,
                                             **entry.fixed)
    except DinobenchError as exc:
        sys.stderr.write(f"python -m dinobench.synthetic: error: {exc}\n")
        return exc.exit_code
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
