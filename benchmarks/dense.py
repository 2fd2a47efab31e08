"""Dense heads: training-step time of the linear segmentation head and the DPT depther, and multi-scale
deformable attention (Mask2Former's pixel decoder) forward / backward vs the official pure-PyTorch formulation.

    python benchmarks/dense.py                               # vits16, 256 px, batch 2
    python benchmarks/dense.py --official /path/to/dinov3    # + the official ms_deform_attn_core_pytorch
    python benchmarks/dense.py --size 512 --batch 1

A training step is: frozen backbone features (no grad) -> head forward -> loss -> backward -> AdamW step, best of
``--rounds``; the backbone's share is printed beside it (a cached-feature protocol skips it). Deformable attention
runs at the shapes of a ViT-Adapter pixel decoder at ``--size`` (levels 1/8, 1/16, 1/32, 8 heads x 32 channels,
4 points; every position a query), on the same inputs for both, with the max abs difference of the outputs.
Mask2Former's whole segmentor (inference and a training step vs the official code): ``benchmarks/m2f.py``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import dinobench  # noqa: E402
from dinobench.heads.depther import build_depther  # noqa: E402
from dinobench.heads.linear_seg import LinearSegHead, segmentation_loss  # noqa: E402
from dinobench.heads.mask2former.deform_attn import ms_deform_attn  # noqa: E402


def best_of(fn, rounds: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def head_steps(args) -> list[tuple[str, float, float]]:
    """``(name, step seconds, backbone seconds)`` for the linear seg head and the DPT depther."""
    torch.manual_seed(0)
    backbone = dinobench.create_backbone(args.backbone).eval().requires_grad_(False)
    images = torch.randn(args.batch, 3, args.size, args.size)
    labels = torch.randint(0, 150, (args.batch, args.size, args.size))
    depth_gt = torch.rand(args.batch, 1, args.size, args.size) * 10

    def seg_features():
        with torch.no_grad():
            return list(backbone.get_intermediate_layers(images, n=1, reshape=True, return_class_token=True))

    seg_head = LinearSegHead(backbone.embed_dim, 150)
    seg_opt = torch.optim.AdamW(seg_head.parameters(), lr=1e-3)

    def seg_step():
        feats = seg_features()
        loss = segmentation_loss(seg_head(feats), labels)
        seg_opt.zero_grad(set_to_none=True)
        loss.backward()
        seg_opt.step()

    depther = build_depther(backbone, type="dpt", max_depth=10.0)
    dpt_opt = torch.optim.AdamW([p for p in depther.decoder.parameters() if p.requires_grad], lr=1e-4)

    def dpt_features():
        with torch.no_grad():
            return depther.features(images)

    def dpt_step():
        pred = depther.decoder(dpt_features())
        pred = F.interpolate(pred, size=depth_gt.shape[-2:], mode="bilinear", align_corners=False)
        loss = (pred - depth_gt).abs().mean()
        dpt_opt.zero_grad(set_to_none=True)
        loss.backward()
        dpt_opt.step()

    return [("linear seg head (1 layer + BN + 1x1 conv, 150 classes)", best_of(seg_step, args.rounds),
             best_of(seg_features, args.rounds)),
            ("DPT depther (4 layers, 256 bins)", best_of(dpt_step, args.rounds), best_of(dpt_features, args.rounds))]


def official_core(checkout: str):
    path = Path(checkout) / "dinov3" / "eval" / "segmentation" / "models" / "utils" / "ms_deform_attn.py"
    spec = importlib.util.spec_from_file_location("official_ms_deform_attn", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ms_deform_attn_core_pytorch


def deform_attn(args) -> list[tuple[str, float, float, float | None]]:
    """``(name, forward s, forward + backward s, max |ours - official|)`` per implementation."""
    gen = torch.Generator().manual_seed(0)
    shapes = [(args.size // s, args.size // s) for s in (8, 16, 32)]
    positions = sum(h * w for h, w in shapes)
    heads, dim, points = 8, 32, 4
    value = torch.randn(args.batch, positions, heads, dim, generator=gen)
    locations = torch.rand(args.batch, positions, heads, len(shapes), points, 2, generator=gen)
    weights = torch.rand(args.batch, positions, heads, len(shapes), points, generator=gen).flatten(-2).softmax(-1)
    weights = weights.view(args.batch, positions, heads, len(shapes), points)
    spatial = torch.tensor(shapes)
    impls = [("dinobench ms_deform_attn (chunked, checkpointed backward)",
              lambda v, l, w: ms_deform_attn(v, spatial, l, w))]
    if args.official:
        core = official_core(args.official)
        impls.append(("official ms_deform_attn_core_pytorch", lambda v, l, w: core(v, spatial, l, w)))
    rows, reference = [], None
    for name, fn in impls:
        with torch.no_grad():
            out = fn(value, locations, weights)
        leaves = [t.clone().requires_grad_(True) for t in (value, locations, weights)]

        def fwd_bwd():
            fn(*leaves).square().mean().backward()

        t_fwd = best_of(lambda: fn(value, locations, weights), args.rounds)
        t_bwd = best_of(fwd_bwd, args.rounds)
        diff = None if reference is None else float((out - reference).abs().max())
        reference = out if reference is None else reference
        rows.append((name, t_fwd, t_bwd, diff))
    print(f"ms_deform_attn: {positions} queries = positions (levels {shapes}), {heads} heads x {dim}, {points} points")
    return rows


def main(argv: list[str] | None = None) -> None:
    """Time the head steps and deformable attention; print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="vits16")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--official", default=None, help="a facebookresearch/dinov3 checkout")
    args = parser.parse_args(argv)
    print(f"dense heads: {args.backbone}, {args.size} px, batch {args.batch}; torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    steps = head_steps(args)
    width = max(len(r[0]) for r in steps)
    print(f"{'training step':<{width}}  {'step s':>7}  {'backbone s':>10}  {'head share':>10}")
    for name, step, backbone_s in steps:
        print(f"{name:<{width}}  {step:7.3f}  {backbone_s:10.3f}  {100 * max(step - backbone_s, 0) / step:9.0f}%")
    rows = deform_attn(args)
    width = max(len(r[0]) for r in rows)
    print(f"{'implementation':<{width}}  {'fwd s':>7}  {'fwd+bwd s':>9}  {'max |diff|':>10}")
    for name, fwd, bwd, diff in rows:
        print(f"{name:<{width}}  {fwd:7.3f}  {bwd:9.3f}  {'-' if diff is None else f'{diff:.1e}':>10}")
    if len(rows) > 1:
        print(f"ratio: dinobench ms_deform_attn forward {rows[1][1] / rows[0][1]:.2f}x, forward + backward "
              f"{rows[1][2] / rows[0][2]:.2f}x the official pure-PyTorch formulation")


if __name__ == "__main__":
    main()
