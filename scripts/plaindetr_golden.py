"""Regenerate tests/fixtures/plaindetr_official.pt from an official DINOv3 checkout (facebookresearch/dinov3).

    python scripts/plaindetr_golden.py --official /path/to/dinov3 [--out tests/fixtures/plaindetr_official.pt]

For each configuration in ``CONFIGS`` (the release's design at toy size, plus variants covering windowed
features, the non-reparameterised boxes, and post-norm without mixed selection / encoder / multi-stride
proposals; the official global decoder needs two-stage box references), builds the official
``build_model(backbone, DetectionHeadConfig(...))`` around a tiny dinobench DINOv3 ViT (patch 16, dim 64,
4 blocks), fills every tensor with :func:`dinobench.testing.deterministic_fill`, and records on the CPU: the
state-dict key layout, the eval-mode outputs of all queries on two differently sized images (padding exercised),
the hub's inference outputs (one-to-one queries only) and the official ``PostProcess`` results.
tests/detection/test_plain_detr.py rebuilds each with dinobench's code and compares. Needs ``torchmetrics`` and
``omegaconf`` (imported by the official eval package), not a GPU.

The outputs are computed in float64 (:data:`DTYPE`, model and images): in float32 this random-weight detector's
rounding error reaches 1.8e-3 on box coordinates of ~90 px (float32 vs float64 of the same code), so float32
values differ between CPUs by up to 7.9e-4 (an AVX-512 Xeon against an AMD EPYC, same code) and no tolerance
could tell a real difference from a CPU's. In float64 dinobench equals the official code bit for bit on one
machine, and the tolerances of tests/detection/test_plain_detr.py (see ``TOLERANCES`` there) are justified by measured
float64 differences between CPU kernels.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import sys
from pathlib import Path

import torch

from dinobench.backbones import create_backbone
from dinobench.testing import deterministic_fill, key_shapes, portable_noise

BACKBONE = dict(name="vitb16", embed_dim=64, depth=4, num_heads=2, ffn_ratio=2.0)
SMALL = dict(num_classes=5, hidden_dim=64, nheads=2, dec_layers=2, dim_feedforward=96, num_encoder_layers=1,
             num_queries_one2one=10, num_queries_one2many=20, topk=12, decoder_rpe_hidden_dim=16,
             proposal_min_size=20)
#: name -> DetectionHeadConfig overrides (the rest: the official defaults + SMALL)
CONFIGS = {
    "release": {},
    "windows": dict(n_windows_sqrt=2, backbone_use_layernorm=True),
    "no_reparam": dict(reparam=False),
    "post_norm": dict(norm_type="post_norm", mixed_selection=False, look_forward_twice=False,
                      add_transformer_encoder=False, proposal_feature_levels=1, proposal_tgt_strides=[16]),
}
IMAGE_SIZES = ((64, 96), (80, 64))  # multiples of the patch size; the batch pads to 80 x 96
SALT = "plaindetr-golden-v1"
DTYPE = torch.float64  # the precision of the fixture's computation (see the module docstring)


def tiny_backbone() -> torch.nn.Module:
    """The backbone the fixture was made with (weights filled deterministically, float32)."""
    cfg = dict(BACKBONE)
    model = create_backbone(cfg.pop("name"), **cfg)
    return deterministic_fill(model, SALT + ":backbone").eval()


def images(dtype: torch.dtype = DTYPE) -> list[torch.Tensor]:
    """The fixed inputs (the same on every CPU; drawn in float32, then cast: the same values at any ``dtype``)."""
    gen = torch.Generator().manual_seed(4321)
    return [portable_noise((3, h, w), gen).to(dtype) for h, w in IMAGE_SIZES]


def config(name: str, patch: int = 16, n_blocks: int = 4) -> dict:
    """The full official configuration of ``name`` (with the hub's backbone-dependent values)."""
    cfg = {**SMALL, **CONFIGS[name]}
    cfg.setdefault("layers_to_use", [m * n_blocks // 4 - 1 for m in range(1, 5)])
    cfg.setdefault("proposal_in_stride", patch)
    cfg.setdefault("proposal_tgt_strides", [int(m * patch) for m in (0.5, 1, 2, 4)])
    return cfg


def _flatten(out: dict, prefix: str = "") -> dict[str, torch.Tensor]:
    flat = {}
    for key, value in out.items():
        if isinstance(value, torch.Tensor):
            flat[prefix + key] = value.detach().clone()
        elif isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                flat.update(_flatten(item, f"{prefix}{key}.{i}."))
    return flat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", required=True, help="path of a facebookresearch/dinov3 checkout")
    parser.add_argument("--out", default="tests/fixtures/plaindetr_official.pt")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(args.official).resolve()))
    from dinov3.eval.detection.config import DetectionHeadConfig
    from dinov3.eval.detection.models.detr import PostProcess, build_model

    fixture = {"backbone": BACKBONE, "image_sizes": IMAGE_SIZES, "salt": SALT, "configs": {}}
    for name in CONFIGS:
        cfg = config(name)
        torch.manual_seed(0)
        backbone = tiny_backbone()
        with contextlib.redirect_stdout(sys.stderr):
            model = build_model(backbone, DetectionHeadConfig(**cfg))
        deterministic_fill(model, f"{SALT}:{name}")
        deterministic_fill(backbone, SALT + ":backbone")
        model.to(DTYPE).eval()
        with torch.no_grad():
            full = _flatten(model(images()))
            hub = copy.deepcopy(model)  # the hub's inference set-up: one-to-one queries only
            hub.num_queries = hub.num_queries_one2one
            hub.transformer.two_stage_num_proposals = hub.num_queries
            inference = hub(images())
            sizes = torch.tensor([list(s) for s in IMAGE_SIZES])
            post = PostProcess(cfg["topk"], cfg.get("reparam", True))(inference, target_sizes=sizes, original_target_sizes=sizes)
        fixture["configs"][name] = {
            "config": cfg, "keys": key_shapes(model), "all_queries": full,
            "inference": {k: inference[k].clone() for k in ("pred_logits", "pred_boxes")},
            "postprocess": [{k: v.clone() for k, v in p.items()} for p in post],
        }
        print(f"{name}: {len(fixture['configs'][name]['keys'])} keys, {len(full)} output tensors", file=sys.stderr)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    torch.save(fixture, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
