"""``dinobench train --config FILE``: SSL pretraining or dino.txt alignment (torchrun / SLURM via submitit)."""

from __future__ import annotations

import argparse


def _recipe(config: str) -> str:
    """The training recipe a config names (``recipe=...``; SSL pretraining when absent)."""
    from dinobench.config import load_config

    return str(load_config(config).get("recipe", "ssl"))


def configure(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``dinobench train``."""
    parser.epilog = ("examples:\n  dinobench train --config configs/train/vit_tiny_digits_pretrain.py\n"
                     "  torchrun --nproc_per_node 8 -m dinobench train --config "
                     "configs/train/dinov3_vitl16_pretrain.py --data-root /data/imagenet\n"
                     "  dinobench train --config ... --slurm --nodes 4 --gpus-per-node 8 --partition p")
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--config", required=True, help="training config (configs/train/*.py)")
    parser.add_argument("--output", default=None, help="run folder (default outputs/train/<config name>); "
                                                        "an existing run there is resumed")
    parser.add_argument("--data-root", default=None, help="dataset folder (sets train.data_root)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. optim.epochs=2")
    parser.add_argument("--slurm", action="store_true", help="submit to SLURM with submitit instead of running")
    parser.add_argument("--nodes", type=int, default=1, help="SLURM nodes")
    parser.add_argument("--gpus-per-node", type=int, default=8, help="SLURM GPUs (= ranks) per node")
    parser.add_argument("--partition", default=None, help="SLURM partition")
    parser.add_argument("--timeout-min", type=int, default=60 * 24, help="SLURM time limit in minutes")


def run(args: argparse.Namespace) -> int:
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
