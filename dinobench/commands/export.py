"""``dinobench export``: a backbone as a Hugging Face folder or official .pth, or a run's trained head in its official files."""

from __future__ import annotations

import argparse

import dinobench
from dinobench.errors import DinobenchError


def configure(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``dinobench export``."""
    parser.add_argument("--backbone", default=None, help="backbone name (or 'hf' with --weights DIR)")
    parser.add_argument("--run", default=None, help="a run folder (or its result.json) whose trained head to export")
    parser.add_argument("--weights", default=None, help="checkpoint to convert (any supported format)")
    parser.add_argument("--output", required=True, help="new folder (hf) or file (pth)")
    parser.add_argument("--format", default="hf", choices=["hf", "pth"],
                          help="hf: config.json + model.safetensors (transformers); pth: official state dict")


def run(args: argparse.Namespace) -> int:
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
