"""``dinobench demo``: SSL-pretrain a tiny ViT on real digits, evaluate it, write the report."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``dinobench demo``."""
    parser.add_argument("--output", default="demo-output", help="demo folder (default ./demo-output; reused)")
    parser.add_argument("--dataset", default="auto", choices=["auto", "digits", "fashion-mnist"],
                        help="pretraining/evaluation images (auto: Fashion-MNIST if its Debian package is "
                             "installed, else the bundled digits)")
    parser.add_argument("--no-dense", action="store_true", help="skip the synthetic ADE20K segmentation task")
    parser.add_argument("pretrain_overrides", nargs="*", metavar="KEY=VALUE",
                        help="overrides of the pretraining config, e.g. optim.epochs=2")


def run(args: argparse.Namespace) -> int:
    """Run the end-to-end demo (see :mod:`dinobench.demo`)."""
    from dinobench.demo import run_demo

    run_demo(args.output, pretrain_overrides=args.pretrain_overrides, dataset=args.dataset, dense=not args.no_dense)
    return 0
