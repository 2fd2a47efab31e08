"""``dinobench run --backbone NAME --task NAME|PATH.py``: evaluate a backbone on a task, write result.json."""

from __future__ import annotations

import argparse

import dinobench
from dinobench.commands.epilog import EPILOG
from dinobench.utils.precision import PRECISION_CHOICES


def configure(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``dinobench run``."""
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--backbone", default=None, help="backbone name (dinobench list backbones)")
    parser.add_argument("--weights", default=None, help="checkpoint path (.pth or .safetensors); default random init")
    parser.add_argument("--task", default=None, help="task name, <dataset>-<protocol> (dinobench list tasks), or a "
                                                    "task config file PATH.py (mmengine; _base_ may name shipped "
                                                    "configs as 'dinobench::_base_/...')")
    parser.add_argument("--include-path", action="append", default=None, metavar="DIR",
                       help="also register every DIR/<name>.py as task <name> (repeatable; $DINOBENCH_TASK_DIRS)")
    parser.add_argument("--head", default=None, help="evaluate a released head, no training (dinobench list heads); "
                                                    "--backbone and --task default to the head's")
    parser.add_argument("--head-weights", default=None, help="the released head's local weight file (with --head)")
    parser.set_defaults(_run_parser=parser)  # for the usage check that depends on --head
    parser.add_argument("--data-root", default=None, help="dataset folder (not needed for digits)")
    parser.add_argument("--output", default=None, help="results folder (default: ./outputs or $DINOBENCH_OUTPUT)")
    parser.add_argument("--cfg-options", nargs="+", action="extend", default=None, metavar="KEY=VALUE",
                       help="override task config keys, e.g. protocol.temperature=0.1 backbone.depth=2 "
                            "(repeatable: later values of a key win)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument("--seed", type=int, default=0, help="seeds python, numpy, torch and random init")
    parser.add_argument("--precision", default=None, choices=list(PRECISION_CHOICES),
                       help="feature-extraction precision (default float32, as the official evaluations of released "
                            "models; auto: bf16 autocast on CUDA and on CPUs with native bf16; $DINOBENCH_PRECISION)")
    parser.add_argument("--save-predictions", action="store_true",
                       help="dense tasks: save colourised predictions + a side-by-side figure beside result.json")


def run(args: argparse.Namespace) -> int:
    """Run one (backbone, task) evaluation and print its metrics."""
    if args.head is None:
        missing = [flag for flag, value in (("--backbone", args.backbone), ("--task", args.task)) if not value]
        if missing:
            args._run_parser.error(
                f"the following arguments are required: {', '.join(missing)} (or --head NAME, which names both)")
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
