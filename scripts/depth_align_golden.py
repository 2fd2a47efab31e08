"""Regenerate tests/fixtures/depth_align_official.json from an official DINOv3 checkout (facebookresearch/dinov3).

    python scripts/depth_align_golden.py --official /path/to/dinov3 [--out tests/fixtures/depth_align_official.json]

Runs the official ``dinov3.eval.depth.utils.align_depth_least_square(gt, pred, valid)`` (torch tensors, as its
evaluation loop calls it) on small fixed cases — a noisy affine prediction, a prediction with outliers and holes
in the valid mask, a constant prediction (rank-deficient) — and stores the inputs, the aligned predictions and the
fitted scale and shift. tests/depth/test_depth_alignment.py compares :func:`dinobench.metrics.dense.align_least_squares`
with them (the official solves in float32, so the comparison is to float32 precision).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]


def cases() -> dict[str, dict[str, np.ndarray]]:
    """name -> gt, pred, valid ([H, W] float32 / bool), from a fixed seed."""
    rng = np.random.default_rng(20261208)
    h, w = 12, 16
    gt = rng.uniform(0.5, 9.0, (h, w)).astype(np.float32)
    valid = gt < 8.5
    valid[:2, :3] = False
    noisy = (0.37 * gt - 0.8 + rng.normal(0, 0.05, (h, w))).astype(np.float32)
    outliers = noisy.copy()
    outliers[5, 5], outliers[7, 11] = 40.0, -3.0
    holes = valid.copy()
    holes[3:9, 4:10] = False
    return {"affine_noise": {"gt": gt, "pred": noisy, "valid": valid},
            "outliers_and_holes": {"gt": gt, "pred": outliers, "valid": holes},
            "constant_prediction": {"gt": gt, "pred": np.full((h, w), 2.5, np.float32), "valid": valid}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", type=Path, required=True, help="dinov3 checkout (work tree)")
    parser.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures" / "depth_align_official.json")
    args = parser.parse_args()
    sys.path.insert(0, str(args.official.resolve()))
    from dinov3.eval.depth.utils import align_depth_least_square

    out = {}
    for name, case in cases().items():
        aligned, scale, shift = align_depth_least_square(torch.from_numpy(case["gt"])[None, None],
                                                         torch.from_numpy(case["pred"])[None, None],
                                                         torch.from_numpy(case["valid"])[None, None])
        out[name] = {"gt": case["gt"].tolist(), "pred": case["pred"].tolist(), "valid": case["valid"].tolist(),
                     "aligned": aligned[0, 0].double().tolist(), "scale": float(np.ravel(scale)[0]),
                     "shift": float(np.ravel(shift)[0])}
    args.out.write_text(json.dumps({"function": "dinov3/eval/depth/utils.py:align_depth_least_square",
                                    "cases": out}) + "\n")
    print(f"{args.out}: {len(out)} cases")


if __name__ == "__main__":
    main()
