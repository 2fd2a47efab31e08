"""Mask2Former segmentor on the CPU: peak RSS and time of inference and of one training step, vs the official code.

Each measurement runs in a fresh process (peak RSS is per process). The model is the task's default
segmentor (ViT-Adapter + Mask2Former head, hidden dim 2048, 100 queries, 150 classes) around a random-init
``--backbone`` (default vits16); inputs are ``--size`` x ``--size`` (default 512). The official
``build_segmentation_decoder(..., decoder_type="m2f")`` (``--official <dinov3 checkout>``, needs torchmetrics
and omegaconf) is timed on the same backbone and input for inference; its deformable attention has no CPU
backward, so training is dinobench only (with and without activation checkpointing).

    python benchmarks/m2f.py [--official /path/to/dinov3] [--backbone vits16] [--size 512] [--batch 1]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _rss import peak_mib, reset_peak  # noqa: E402


def _segmentor(args: argparse.Namespace, with_cp: bool) -> torch.nn.Module:
    from dinobench.backbones import create_backbone
    from dinobench.heads.mask2former import build_m2f_segmentor

    torch.manual_seed(0)
    return build_m2f_segmentor(create_backbone(args.backbone), hidden_dim=args.hidden_dim, num_classes=150,
                               with_cp=with_cp)


def _official(args: argparse.Namespace) -> torch.nn.Module:
    sys.path.insert(0, str(Path(args.official).resolve()))
    from dinov3.eval.segmentation.models import build_segmentation_decoder

    from dinobench.backbones import create_backbone

    torch.manual_seed(0)
    with contextlib.redirect_stdout(sys.stderr):
        model = build_segmentation_decoder(create_backbone(args.backbone), decoder_type="m2f",
                                           hidden_dim=args.hidden_dim, num_classes=150)
    model.autocast_ctx = contextlib.nullcontext  # float32 on CPU, as ours
    return model


def _images(args: argparse.Namespace) -> torch.Tensor:
    return torch.randn(args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))


def probe(args: argparse.Namespace) -> dict:
    """One measurement in this process: ``{"peak_mib", "baseline_mib", "seconds"}`` (best of ``--rounds``)."""
    torch.set_num_threads(args.threads)
    kind = args.probe
    model = _official(args) if kind == "official-infer" else _segmentor(args, with_cp=kind != "train-nocp")
    x = _images(args)
    times = []
    if kind.endswith("infer"):
        model.eval()
        baseline = reset_peak()
        for _ in range(args.rounds):
            start = time.perf_counter()
            with torch.inference_mode():
                model.predict(x, rescale_to=(args.size, args.size))
            times.append(time.perf_counter() - start)
    else:
        from dinobench.heads.mask2former import M2FCriterion, semantic_targets

        model.train()
        criterion = M2FCriterion(150)
        groups = [{"params": g["params"], "weight_decay": 0.05 * g["wd_multiplier"]} for g in model.param_groups()]
        optimizer = torch.optim.AdamW(groups, lr=1e-4)
        masks = torch.randint(0, 6, (args.batch, args.size // 64, args.size // 64), generator=torch.Generator())
        masks = masks.repeat_interleave(64, 1).repeat_interleave(64, 2)  # blocky scenes with 6 classes
        targets = semantic_targets(masks, 255)
        baseline = reset_peak()
        for _ in range(args.rounds):
            start = time.perf_counter()
            loss, _ = criterion(model(x), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.01)
            optimizer.step()
            times.append(time.perf_counter() - start)
    return {"probe": kind, "baseline_mib": baseline, "peak_mib": peak_mib(), "seconds": min(times),
            "params_m": sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", help="a facebookresearch/dinov3 checkout (adds the official inference)")
    parser.add_argument("--backbone", default="vits16")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--hidden-dim", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=2, help="timed repetitions per probe (best is printed)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--probe", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        print(json.dumps(probe(args)))
        return
    kinds = ["infer"] + (["official-infer"] if args.official else []) + ["train", "train-nocp"]
    common = [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if k != "probe" and v is not None]
    rows = {}
    for kind in kinds:
        out = subprocess.run([sys.executable, __file__, *common, f"--probe={kind}"], capture_output=True, text=True)
        if out.returncode:
            raise SystemExit(f"probe {kind} failed:\n{out.stderr[-2000:]}")
        rows[kind] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"Mask2Former segmentor (hidden {args.hidden_dim}, {rows['train']['params_m']:.1f} M trainable) on "
          f"{args.backbone}, {args.batch}x3x{args.size}x{args.size}, fp32, {args.threads} threads")
    print(f"{'measurement':40s} {'peak RSS MiB':>12s} {'increase MiB':>12s} {'seconds':>8s}")
    labels = {"infer": "dinobench inference (predict)", "official-infer": "official inference (predict)",
              "train": "dinobench train step (with_cp)", "train-nocp": "dinobench train step (no checkpointing)"}
    for kind, row in rows.items():
        print(f"{labels[kind]:40s} {row['peak_mib']:12.0f} {row['peak_mib'] - row['baseline_mib']:12.0f} "
              f"{row['seconds']:8.2f}")
    if "official-infer" in rows:
        ours, theirs = rows["infer"], rows["official-infer"]
        print(f"inference vs official: time {ours['seconds'] / theirs['seconds']:.2f}x, peak RSS increase "
              f"{(ours['peak_mib'] - ours['baseline_mib']) / max(1.0, theirs['peak_mib'] - theirs['baseline_mib']):.2f}x"
              " (below 1 is better)")


if __name__ == "__main__":
    main()
