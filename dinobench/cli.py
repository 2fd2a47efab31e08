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

logger = logging.getLogger("dinobench")

EPILOG = """examples:
  dinobench list tasks
  dinobench run --backbone vit_tiny --task digits-knn
  dinobench run --backbone vitl16 --weights dinov3_vitl16.pth --task imagenet-knn --data-root /data/imagenet
  dinobench run --backbone vit_tiny --task digits-knn --cfg-options protocol.temperature=0.1 backbone.depth=2
  dinobench export --backbone vitl16 --weights dinov3_vitl16.pth --output vitl16-hf
"""


class _OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line on stderr (exit 2)."""

    def error(self, message: str) -> None:  # noqa: D102
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = _OneLineParser(prog="dinobench", description="Benchmark DINOv3-style vision backbones.",
                            epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"dinobench {dinobench.__version__}")
    parser.add_argument("--debug", action="store_true", help="debug logging and full tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_OneLineParser)

    p_list = sub.add_parser("list", help="list backbones, tasks, datasets, protocols or plugins")
    p_list.add_argument("what", nargs="?", default="all",
                        choices=["all", "backbones", "tasks", "datasets", "protocols", "plugins"])
    p_list.add_argument("--json", action="store_true", help="machine-readable output")

    p_run = sub.add_parser("run", help="evaluate a backbone on a task and write result.json",
                           epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p_run.add_argument("--backbone", required=True, help="backbone name (dinobench list backbones)")
    p_run.add_argument("--weights", default=None, help="checkpoint path (.pth or .safetensors); default random init")
    p_run.add_argument("--task", required=True, help="task name, <dataset>-<protocol> (dinobench list tasks)")
    p_run.add_argument("--data-root", default=None, help="dataset folder (not needed for digits)")
    p_run.add_argument("--output", default=None, help="results folder (default: ./outputs or $DINOBENCH_OUTPUT)")
    p_run.add_argument("--cfg-options", nargs="+", default=None, metavar="KEY=VALUE",
                       help="override task config keys, e.g. protocol.temperature=0.1 backbone.depth=2")
    p_run.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p_run.add_argument("--seed", type=int, default=0, help="seeds python, numpy, torch and random init")
    p_run.add_argument("--save-predictions", action="store_true",
                       help="dense tasks: save colourised predictions + a side-by-side figure beside result.json")

    p_export = sub.add_parser("export", help="save a backbone as a Hugging Face directory or official .pth")
    p_export.add_argument("--backbone", required=True, help="backbone name (or 'hf' with --weights DIR)")
    p_export.add_argument("--weights", default=None, help="checkpoint to convert (any supported format)")
    p_export.add_argument("--output", required=True, help="new folder (hf) or file (pth)")
    p_export.add_argument("--format", default="hf", choices=["hf", "pth"],
                          help="hf: config.json + model.safetensors (transformers); pth: official state dict")

    p_train = sub.add_parser("train", help="SSL-pretrain a backbone (DINO + iBOT + KoLeo, Gram, distillation)",
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
    return parser


def _table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    widths = {c: max([len(c)] + [len(str(r.get(c, ""))) for r in rows]) for c in columns}
    lines = ["  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip()]
    lines += ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns).rstrip() for r in rows]
    return "\n".join(lines)


def _format_params(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M"


def _list_rows(what: str) -> tuple[list[dict[str, Any]], list[str]]:
    from dinobench.plugin_manager import get_registries, plugin_rows

    reg = get_registries()
    if what == "backbones":
        from dinobench.backbones.factory import count_parameters

        rows = [{"name": s.name, "family": s.family, "params": _format_params(count_parameters(s.name)),
                 "patch": s.patch_size or "-", "dim": s.embed_dim or "-", "source": s.source,
                 "description": s.description}
                for s in reg.backbones]
        return rows, ["name", "family", "params", "patch", "dim", "source", "description"]
    if what == "tasks":
        from dinobench.config import load_config

        rows = []
        for s in reg.tasks:
            cfg = load_config(s.config)
            rows.append({"name": s.name, "protocol": cfg.get("protocol", {}).get("type", "?"),
                         "dataset": cfg.get("dataset", {}).get("type", "?"), "source": s.source,
                         "description": s.description or cfg.get("task", {}).get("description", "")})
        return rows, ["name", "protocol", "dataset", "source", "description"]
    if what == "datasets":
        return [{"name": s.name, "source": s.source, "description": s.description} for s in reg.datasets], \
            ["name", "source", "description"]
    if what == "protocols":
        return [{"name": s.name, "version": s.version, "source": s.source, "description": s.description}
                for s in reg.protocols], ["name", "version", "source", "description"]
    return plugin_rows(), ["plugin", "package", "version"]


def cmd_list(args: argparse.Namespace) -> int:
    """Print registered entries as tables (or JSON)."""
    sections = ["backbones", "tasks", "datasets", "protocols", "plugins"] if args.what == "all" else [args.what]
    payload = {}
    for section in sections:
        rows, columns = _list_rows(section)
        payload[section] = rows
        if not args.json:
            if len(sections) > 1:
                print(f"\n{section}:")
            print(_table(rows, columns))
    if args.json:
        print(json.dumps(payload if len(sections) > 1 else payload[sections[0]], indent=2))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Run one (backbone, task) evaluation and print its metrics."""
    result = dinobench.run(backbone=args.backbone, task=args.task, weights=args.weights, data_root=args.data_root,
                           output_dir=args.output, options=args.cfg_options, device=args.device, seed=args.seed,
                           save_predictions=args.save_predictions)
    main = result.main_metric
    arrow = "higher is better" if main.higher_is_better else "lower is better"
    print(f"{result.task} | {result.backbone} ({result.weights}) | {main.name} = {main.value:.2f} ({arrow})")
    for name, value in result.metrics.items():
        print(f"  {name:>12}: {value:.4g}")
    print(f"result: {result.path}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Convert a backbone (and its weights) to the HF layout or the official .pth format."""
    from dinobench.backbones.export import export_hf, export_pth

    model = dinobench.create_backbone(args.backbone, weights=args.weights)
    path = export_hf(model, args.output) if args.format == "hf" else export_pth(model, args.output)
    print(f"exported {args.backbone} ({args.weights or 'random-init'}) -> {path}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Run (or submit) SSL training from a config file plus key=value overrides."""
    from pathlib import Path

    from dinobench.ssl.launch import launch, resolve_train_config

    cfg = resolve_train_config(args.config, args.overrides, data_root=args.data_root)
    output = Path(args.output or Path(os.environ.get("DINOBENCH_OUTPUT", "outputs")) / "train" / Path(args.config).stem)
    summary = launch(cfg, output, slurm=args.slurm, nodes=args.nodes, gpus_per_node=args.gpus_per_node,
                     partition=args.partition, timeout_min=args.timeout_min)
    for key, value in summary.items():
        print(f"{key}: {value}")
    return 143 if "interrupted_at" in summary else 0  # 128 + SIGTERM: stopped, resumable


COMMANDS = {"list": cmd_list, "run": cmd_run, "export": cmd_export, "train": cmd_train}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dinobench`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO, format="%(message)s",
                        stream=sys.stderr)
    if not args.debug:
        logging.getLogger("mmengine").setLevel(logging.WARNING)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return COMMANDS[args.command](args)
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
