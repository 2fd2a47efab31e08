"""Regenerate tests/fixtures/depther_official.pt from an official DINOv3 checkout (facebookresearch/dinov3).

    python scripts/depther_golden.py --official /path/to/dinov3 [--out tests/fixtures/depther_official.pt]

For each configuration of :data:`CONFIGS` (the released layouts: a linear NYU-style head, the SynthMix DPT head's
design, the CHMv2 head's design and its exact released configuration, and a linear head with class tokens over four layers), builds the official
``make_depther_from_config(backbone, DecoderConfig(**cfg))`` around a tiny dinobench ViT (patch 16, dim 64,
4 blocks), fills the decoder with :func:`dinobench.testing.deterministic_fill` (values depend on key names only),
runs its forward in float32 without autocast on a fixed odd-sized batch (centre padding is exercised), and saves
the decoder's key layout and the depth maps. tests/depth/test_depther.py builds the same models with
``dinobench.heads.build_depther``, fills them the same way and compares. Needs ``torchmetrics`` and ``omegaconf``.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import torch

from dinobench.backbones import create_backbone
from dinobench.testing import deterministic_fill, key_shapes, portable_noise

BACKBONE = dict(name="vitb16", embed_dim=64, depth=4, num_heads=2, ffn_ratio=2.0)
IMAGE_SIZE = (46, 61)  # not whole patches: padded to 48 x 64
SALT = "depther-golden-v1"
SMALL_DPT = dict(channels=32, post_process_channels=[16, 16, 32, 32])
#: DecoderConfig fields (backbone_out_layers as the official enum's value or a list)
CONFIGS: dict[str, dict] = {
    "linear_nyu": dict(type="linear", backbone_out_layers="LAST", use_batchnorm=True, use_cls_token=False,
                       n_output_channels=32, min_depth=0.001, max_depth=10.0),
    "linear_cls_four": dict(type="linear", backbone_out_layers="FOUR_LAST", use_batchnorm=False, use_cls_token=True,
                            n_output_channels=16, min_depth=0.01, max_depth=20.0, bins_strategy="log",
                            norm_strategy="softmax", use_backbone_norm=False),
    "dpt_synthmix": dict(type="dpt", backbone_out_layers="FOUR_EVEN_INTERVALS", use_batchnorm=True, use_cls_token=False,
                         n_output_channels=32, min_depth=0.001, max_depth=100.0, head_kwargs=dict(SMALL_DPT)),
    "dpt_chmv2": dict(type="dpt", backbone_out_layers=[0, 1, 2, 3], use_batchnorm=False, use_cls_token=True,
                      n_output_channels=32, min_depth=0.001, max_depth=96.0, bins_strategy="chmv2_mixlog",
                      norm_strategy="chmv2_mixlog",
                      head_kwargs=dict(SMALL_DPT, n_hidden_channels=16, use_bias=True, projection_after_fusion=False)),
    # the released CHMv2 head's exact DecoderConfig: channels / post_process_channels from the official DPTHead's
    # own defaults (256, [128, 256, 512, 1024]), as in dinov3_vitl16_chmv2
    "dpt_chmv2_hub": dict(type="dpt", backbone_out_layers=[0, 1, 2, 3], use_batchnorm=False, use_cls_token=True,
                          n_output_channels=256, min_depth=0.001, max_depth=96.0, bins_strategy="chmv2_mixlog",
                          norm_strategy="chmv2_mixlog",
                          head_kwargs=dict(n_hidden_channels=128, use_bias=True, projection_after_fusion=False)),
}


def tiny_backbone() -> torch.nn.Module:
    """The backbone the fixture was made with (weights filled deterministically)."""
    cfg = dict(BACKBONE)
    model = create_backbone(cfg.pop("name"), **cfg)
    return deterministic_fill(model, SALT + ":backbone").eval()


def inputs() -> torch.Tensor:
    """The fixed input batch (the same on every CPU)."""
    return portable_noise((2, 3, *IMAGE_SIZE), torch.Generator().manual_seed(4321))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", required=True, help="path of a facebookresearch/dinov3 checkout")
    parser.add_argument("--out", default="tests/fixtures/depther_official.pt")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(args.official).resolve()))
    from dinov3.eval.depth.models import DecoderConfig, make_depther_from_config
    from dinov3.eval.depth.models.encoder import BackboneLayersSet

    fixture: dict = {"config": {"backbone": BACKBONE, "image_size": IMAGE_SIZE, "salt": SALT, "configs": CONFIGS}}
    x = inputs()
    for name, cfg in CONFIGS.items():
        cfg = dict(cfg)
        if isinstance(cfg["backbone_out_layers"], str):
            cfg["backbone_out_layers"] = BackboneLayersSet(cfg["backbone_out_layers"])
        torch.manual_seed(0)
        depther = make_depther_from_config(tiny_backbone(), DecoderConfig(**cfg))
        depther.autocast_ctx = contextlib.nullcontext  # the official model autocasts (bf16 on CPU): float32 here
        deterministic_fill(depther.decoder, f"{SALT}:{name}")
        depther.eval()
        with torch.no_grad():
            depth = depther(x)
        fixture[name] = {"keys": key_shapes(depther.decoder), "depth": depth.clone(),
                         "out_indices": list(depther.encoder.backbone_out_indices)}
        print(f"{name}: {len(fixture[name]['keys'])} decoder keys, depth {tuple(depth.shape)}", file=sys.stderr)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    torch.save(fixture, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
