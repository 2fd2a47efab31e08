"""The ``dinobench`` command line: ``list``, ``run`` (more subcommands plug in here).

Exit codes: 0 success, 2 bad usage or input (one line on stderr; ``--debug`` for the
traceback), 1 unexpected internal error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from typing import Any, Sequence

import dinobench
from dinobench.errors import DinobenchError
from dinobench.listing import LIST_SECTIONS, list_rows, text_table
from dinobench.utils.precision import PRECISION_CHOICES

logger = logging.getLogger("dinobench")

EPILOG = """examples:
  dinobench list tasks
  dinobench run --backbone vit_tiny --task digits-knn
  dinobench run --backbone vitl16 --weights dinov3_vitl16.pth --task imagenet-knn --data-root /data/imagenet
  dinobench run --backbone vit_tiny --task digits-knn --cfg-options protocol.temperature=0.1 backbone.depth=2
  dinobench export --backbone vitl16 --weights dinov3_vitl16.pth --output vitl16-hf
"""


REPORT_EPILOG = """Results share a leaderboard column only when task, protocol version and protocol hash (resolved
config + dataset fingerprint) match; other groups get their own column, e.g. "digits-knn [cfg 1a2b3c4]",
with a note saying what differs. Re-runs of one seed count once (the newest); seeds are averaged.

examples:
  dinobench report --output report                       # scan ./outputs
  dinobench report outputs/ leaderboards/baseline.jsonl --output report --format md,html
  dinobench report outputs/ --jsonl leaderboards/baseline.jsonl   # freeze a baseline for `check`
"""

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


class _OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line on stderr (exit 2)."""

    def error(self, message: str) -> None:  # noqa: D102
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(2)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser of every subcommand; plugin commands are listed, and the one named in ``argv``
    (if any) gets its arguments from its plugin."""
    parser = _OneLineParser(prog="dinobench", description="Benchmark DINOv3-style vision backbones.",
                            epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"dinobench {dinobench.__version__}")
    parser.add_argument("--debug", action="store_true", help="debug logging and full tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_OneLineParser)

    p_list = sub.add_parser("list", help="list backbones, tasks, heads, datasets, protocols, feature kinds, commands or plugins")
    p_list.add_argument("what", nargs="?", default="all",
                        choices=["all", *LIST_SECTIONS])
    p_list.add_argument("--json", action="store_true", help="machine-readable output")
    p_list.add_argument("--include-path", action="append", default=None, metavar="DIR",
                        help="also list the task files in DIR (repeatable; $DINOBENCH_TASK_DIRS)")

    p_run = sub.add_parser("run", help="evaluate a backbone on a task and write result.json",
                           epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p_run.add_argument("--backbone", default=None, help="backbone name (dinobench list backbones)")
    p_run.add_argument("--weights", default=None, help="checkpoint path (.pth or .safetensors); default random init")
    p_run.add_argument("--task", default=None, help="task name, <dataset>-<protocol> (dinobench list tasks), or a "
                                                    "task config file PATH.py (mmengine; _base_ may name shipped "
                                                    "configs as 'dinobench::_base_/...')")
    p_run.add_argument("--include-path", action="append", default=None, metavar="DIR",
                       help="also register every DIR/<name>.py as task <name> (repeatable; $DINOBENCH_TASK_DIRS)")
    p_run.add_argument("--head", default=None, help="evaluate a released head, no training (dinobench list heads); "
                                                    "--backbone and --task default to the head's")
    p_run.add_argument("--head-weights", default=None, help="the released head's local weight file (with --head)")
    p_run.set_defaults(_run_parser=p_run)  # for the usage check that depends on --head
    p_run.add_argument("--data-root", default=None, help="dataset folder (not needed for digits)")
    p_run.add_argument("--output", default=None, help="results folder (default: ./outputs or $DINOBENCH_OUTPUT)")
    p_run.add_argument("--cfg-options", nargs="+", action="extend", default=None, metavar="KEY=VALUE",
                       help="override task config keys, e.g. protocol.temperature=0.1 backbone.depth=2 "
                            "(repeatable: later values of a key win)")
    p_run.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p_run.add_argument("--seed", type=int, default=0, help="seeds python, numpy, torch and random init")
    p_run.add_argument("--precision", default=None, choices=list(PRECISION_CHOICES),
                       help="feature-extraction precision (default auto: bf16 autocast on CUDA and on CPUs with "
                            "native bf16, else float32; $DINOBENCH_PRECISION)")
    p_run.add_argument("--save-predictions", action="store_true",
                       help="dense tasks: save colourised predictions + a side-by-side figure beside result.json")

    p_export = sub.add_parser("export", help="save a backbone as a Hugging Face directory or official .pth, or a "
                                             "head trained by a run in the official layout (--run)")
    p_export.add_argument("--backbone", default=None, help="backbone name (or 'hf' with --weights DIR)")
    p_export.add_argument("--run", default=None, help="a run folder (or its result.json) whose trained head to export")
    p_export.add_argument("--weights", default=None, help="checkpoint to convert (any supported format)")
    p_export.add_argument("--output", required=True, help="new folder (hf) or file (pth)")
    p_export.add_argument("--format", default="hf", choices=["hf", "pth"],
                          help="hf: config.json + model.safetensors (transformers); pth: official state dict")

    p_train = sub.add_parser("train", help="SSL-pretrain a backbone (DINO + iBOT + KoLeo, Gram, distillation) or "
                                           "align a dino.txt text tower (recipe='dinotxt')",
                             epilog="examples:\n  dinobench train --config configs/train/vit_tiny_digits_pretrain.py\n"
                                    "  torchrun --nproc_per_node 8 -m dinobench train --config "
                                    "configs/train/dinov3_vitl16_pretrain.py --data-root /data/imagenet\n"
                                    "  dinobench train --config ... --slurm --nodes 4 --gpus-per-node 8 --partition p",
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    p_train.add_argument("--config", required=True, help="training config (configs/train/*.py)")
    p_train.add_argument("--output", default=None, help="run folder (default outputs/train/<config name>); "
                                                        "an existing run there is resumed")
    p_train.add_argument("--data-root", default=None, help="dataset folder (sets train.data_root)")
    p_train.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. optim.epochs=2")
    p_train.add_argument("--slurm", action="store_true", help="submit to SLURM with submitit instead of running")
    p_train.add_argument("--nodes", type=int, default=1, help="SLURM nodes")
    p_train.add_argument("--gpus-per-node", type=int, default=8, help="SLURM GPUs (= ranks) per node")
    p_train.add_argument("--partition", default=None, help="SLURM partition")
    p_train.add_argument("--timeout-min", type=int, default=60 * 24, help="SLURM time limit in minutes")

    p_report = sub.add_parser("report", help="leaderboard + per-task tables and plots (Markdown, CSV, HTML)",
                              epilog=REPORT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p_report.add_argument("paths", nargs="*", metavar="PATH",
                          help="results folders (scanned for result.json), result.json files or .jsonl baselines "
                               "(default: ./outputs or $DINOBENCH_OUTPUT)")
    p_report.add_argument("--output", default=None, metavar="DIR",
                          help="write leaderboard.md, leaderboard.csv, results.csv and report.html here")
    p_report.add_argument("--format", default="md,csv,html", help="comma-separated subset of md,csv,html")
    p_report.add_argument("--title", default="dinobench leaderboard", help="report title")
    p_report.add_argument("--jsonl", default=None, metavar="FILE",
                          help="freeze the results shown (newest per seed) into a JSONL baseline for `dinobench check`")

    p_check = sub.add_parser("check", help="compare results with a baseline: exit 1 on regressed or missing",
                             epilog=CHECK_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p_check.add_argument("--baseline", required=True, metavar="FILE", help="JSONL baseline (dinobench report --jsonl)")
    p_check.add_argument("--results", nargs="+", default=None, metavar="PATH",
                         help="results folders or files (default: ./outputs or $DINOBENCH_OUTPUT)")
    p_check.add_argument("--tolerance", nargs="+", default=[], metavar="METRIC=ABS",
                         help="absolute tolerance per main-metric name, e.g. top1=0.5; per task: "
                              "digits-logreg:top1=2 ('*=0.1': all others; default 1e-6)")
    p_check.add_argument("--strict", action="store_true",
                         help="also fail (exit 1) on not-comparable entries: results that exist only under another "
                              "protocol config or version")
    p_check.add_argument("--ignore-weights-hash", action="store_true",
                         help="match checkpoints by file name only (weights retrained in CI, not bit-identical)")
    p_check.add_argument("--markdown", default=None, metavar="FILE",
                         help="also append the table as Markdown to FILE (e.g. $GITHUB_STEP_SUMMARY)")

    p_demo = sub.add_parser("demo", help="SSL-pretrain a tiny ViT on real digits, evaluate it vs random init, "
                                         "write the report (no downloads, a few CPU minutes)")
    p_demo.add_argument("--output", default="demo-output", help="demo folder (default ./demo-output; reused)")
    p_demo.add_argument("--dataset", default="auto", choices=["auto", "digits", "fashion-mnist"],
                        help="pretraining/evaluation images (auto: Fashion-MNIST if its Debian package is "
                             "installed, else the bundled digits)")
    p_demo.add_argument("--no-dense", action="store_true", help="skip the synthetic ADE20K segmentation task")
    p_demo.add_argument("pretrain_overrides", nargs="*", metavar="KEY=VALUE",
                        help="overrides of the pretraining config, e.g. optim.epochs=2")
    _add_plugin_commands(sub, argv)
    return parser


def _add_plugin_commands(sub: Any, argv: Sequence[str] | None) -> None:
    """A subparser per plugin command (hook ``dinobench_register_commands``); only the chosen one is configured."""
    from dinobench.plugin_manager import get_registries
    from dinobench.registry import resolve_object

    chosen = next((a for a in (argv if argv is not None else sys.argv[1:]) if not a.startswith("-")), None)
    for spec in get_registries().commands:
        if spec.name in COMMANDS:
            logging.getLogger("dinobench").warning(
                "dinobench: warning: plugin %s registers command %r, which is built in; ignored", spec.source, spec.name)
            continue
        p_cmd = sub.add_parser(spec.name, help=f"{spec.help} [plugin {spec.source}]")
        p_cmd.set_defaults(_plugin_run=spec.run)
        if spec.name == chosen:
            try:
                resolve_object(spec.configure)(p_cmd)
            except Exception as exc:  # a broken plugin command must not take the other commands down
                raise DinobenchError(f"plugin command {spec.name!r} ({spec.source}) failed to set up its arguments: "
                                     f"{type(exc).__name__}: {exc}") from exc


def cmd_list(args: argparse.Namespace) -> int:
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


def cmd_run(args: argparse.Namespace) -> int:
    """Run one (backbone, task) evaluation and print its metrics."""
    result = dinobench.run(backbone=args.backbone, task=args.task, weights=args.weights, data_root=args.data_root,
                           output_dir=args.output, options=args.cfg_options, device=args.device, seed=args.seed,
                           save_predictions=args.save_predictions, head=args.head, head_weights=args.head_weights,
                           precision=args.precision)
    if result.path is None:  # torchrun rank > 0: same metrics; rank 0 prints and writes the record
        return 0
    main = result.main_metric
    arrow = "higher is better" if main.higher_is_better else "lower is better"
    print(f"{result.task} | {result.backbone} ({result.weights}) | {main.name} = {main.value:.2f} ({arrow})")
    for name, value in result.metrics.items():
        print(f"  {name:>12}: {value:.4g}")
    print(f"result: {result.path}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Convert a backbone (and its weights) to the HF layout or the official .pth format, or export a run's head."""
    if args.run:
        from dinobench.head_export import export_head

        for path in export_head(args.run, args.output):
            print(f"exported {path}")
        return 0
    if not args.backbone:
        raise DinobenchError("dinobench export needs --backbone NAME (a backbone) or --run RUN (a trained head)")
    from dinobench.backbones.export import export_hf, export_pth

    model = dinobench.create_backbone(args.backbone, weights=args.weights)
    path = export_hf(model, args.output) if args.format == "hf" else export_pth(model, args.output)
    print(f"exported {args.backbone} ({args.weights or 'random-init'}) -> {path}")
    return 0


def _recipe(config: str) -> str:
    """The training recipe a config names (``recipe=...``; SSL pretraining when absent)."""
    from dinobench.config import load_config

    return str(load_config(config).get("recipe", "ssl"))


def cmd_train(args: argparse.Namespace) -> int:
    """Run (or submit) training from a config file plus key=value overrides: SSL pretraining, or - with
    ``recipe="dinotxt"`` - dino.txt text alignment (:mod:`dinobench.text.train`).

    SIGTERM stops with a checkpoint: :class:`~dinobench.training.TrainingInterrupted`, exit 143 (resumable).
    """
    from pathlib import Path

    from dinobench.training.launch import launch, resolve_train_config
    from dinobench.utils.paths import output_root

    output = Path(args.output) if args.output else output_root() / "train" / Path(args.config).stem
    if _recipe(args.config) == "dinotxt":
        from dinobench.errors import ConfigError
        from dinobench.text.train import resolve_dinotxt_config, train_dinotxt

        if args.slurm:
            raise ConfigError(f"{args.config}: --slurm runs the SSL recipe only; run dino.txt under torchrun")
        summary = train_dinotxt(resolve_dinotxt_config(args.config, args.overrides, data_root=args.data_root),
                                output)
        for key, value in summary.items():
            print(f"{key}: {value}")
        return 0
    cfg = resolve_train_config(args.config, args.overrides, data_root=args.data_root)
    summary = launch(cfg, output, slurm=args.slurm, nodes=args.nodes, gpus_per_node=args.gpus_per_node,
                     partition=args.partition, timeout_min=args.timeout_min)
    for key, value in summary.items():
        print(f"{key}: {value}")
    return 0


def _default_results() -> list[str]:
    from dinobench.utils.paths import DEFAULT_OUTPUT

    return [os.environ.get("DINOBENCH_OUTPUT", DEFAULT_OUTPUT)]


def cmd_report(args: argparse.Namespace) -> int:
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
    paths = args.paths or _default_results()
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


def cmd_check(args: argparse.Namespace) -> int:
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
    results = scan(args.results or _default_results())
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


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the end-to-end demo (see :mod:`dinobench.demo`)."""
    from dinobench.demo import run_demo

    run_demo(args.output, pretrain_overrides=args.pretrain_overrides, dataset=args.dataset, dense=not args.no_dense)
    return 0


COMMANDS = {"list": cmd_list, "run": cmd_run, "export": cmd_export, "train": cmd_train,
            "report": cmd_report, "check": cmd_check, "demo": cmd_demo}


def _include(folders: list[str]) -> None:
    """``--include-path``: the folders' task files join the registered tasks (first given, first searched)."""
    from dinobench.plugin_manager import get_registries
    from dinobench.tasks import add_include_path

    for folder in reversed(folders):
        add_include_path(folder)
    get_registries.cache_clear()  # re-read with the new folders


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dinobench`` console script."""
    try:
        parser = build_parser(argv)
    except DinobenchError as exc:
        sys.stderr.write(f"dinobench: error: {exc}\n")
        return exc.exit_code
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO, format="%(message)s",
                        stream=sys.stderr)
    if not args.debug:
        logging.getLogger("mmengine").setLevel(logging.WARNING)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "run" and args.head is None:
        missing = [flag for flag, value in (("--backbone", args.backbone), ("--task", args.task)) if not value]
        if missing:
            args._run_parser.error(
                f"the following arguments are required: {', '.join(missing)} (or --head NAME, which names both)")
    try:
        if getattr(args, "include_path", None):
            _include(args.include_path)
        if args.command in COMMANDS:
            return COMMANDS[args.command](args)
        from dinobench.registry import resolve_object

        return int(resolve_object(args._plugin_run)(args) or 0)
    except DinobenchError as exc:
        if args.debug:
            traceback.print_exc()
        message = " ".join(str(exc).split("\n")[0].split())
        sys.stderr.write(f"dinobench {args.command}: error: {message}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("dinobench: interrupted\n")
        return 130
    except BrokenPipeError:  # `dinobench list | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # a full disk (ENOSPC), a read-only or vanished folder: one line, not a traceback
        if args.debug:
            traceback.print_exc()
        where = f"{exc.filename}: " if exc.filename else ""
        sys.stderr.write(f"dinobench {args.command}: error: {where}{exc.strerror or exc} "
                         f"(errno {exc.errno}); free space or choose another folder\n")
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
