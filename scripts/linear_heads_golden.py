"""Regenerate tests/fixtures/linear_heads_official.pt from an official DINOv3 checkout (facebookresearch/dinov3).

    python scripts/linear_heads_golden.py --official /path/to/dinov3 [--out tests/fixtures/linear_heads_official.pt]

Two released linear layouts on a tiny dinobench ViT (patch 16, dim 64, 4 blocks, weights filled by
:func:`dinobench.testing.deterministic_fill`), in float32:

- the official ``eval/linear.py`` grid: ``AllClassifiers`` of ``LinearClassifier(n_blocks, avgpool=True)`` for n = 1
  and 4 (the hub head ``dinov3_vit7b16_lc`` is the n = 1 one), on ``get_intermediate_layers(n=4,
  return_class_token=True)`` of a fixed batch; saved: the grid's keys (official names) and each head's logits;
- the official segmentation ``LinearHead`` (``build_segmentation_decoder(..., decoder_type="linear")``'s decoder)
  over the last layer's patch map; saved: its keys under ``segmentation_model.1.`` (as ``model_final.pth`` holds
  them) and its ``predict`` logits.

tests/core/test_official_heads.py fills dinobench's models the same way and compares. Needs ``omegaconf``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from dinobench.backbones import create_backbone
from dinobench.testing import deterministic_fill, key_shapes, portable_noise

BACKBONE = dict(name="vitb16", embed_dim=64, depth=4, num_heads=2, ffn_ratio=2.0)
IMAGE_SIZE = (48, 64)
SALT = "linear-heads-golden-v1"
NUM_CLASSES = 7
#: (n_blocks, lr as the official name writes it after scaling)
GRID = ((1, 0.001), (4, 0.01))


def tiny_backbone() -> torch.nn.Module:
    """The backbone the fixture was made with (weights filled deterministically)."""
    cfg = dict(BACKBONE)
    model = create_backbone(cfg.pop("name"), **cfg)
    return deterministic_fill(model, SALT + ":backbone").eval()


def inputs() -> torch.Tensor:
    """The fixed input batch (the same on every CPU)."""
    return portable_noise((3, 3, *IMAGE_SIZE), torch.Generator().manual_seed(99))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", required=True, help="path of a facebookresearch/dinov3 checkout")
    parser.add_argument("--out", default="tests/fixtures/linear_heads_official.pt")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(args.official).resolve()))
    from dinov3.eval.linear import AllClassifiers, LinearClassifier, create_linear_input
    from dinov3.eval.segmentation.models.heads.linear_head import LinearHead

    backbone, x = tiny_backbone(), inputs()
    with torch.no_grad():
        tokens = backbone.get_intermediate_layers(x, n=4, return_class_token=True)
        heads = {}
        for n, lr in GRID:
            width = create_linear_input(tokens, use_n_blocks=n, use_avgpool=True).shape[1]
            heads[f"classifier_{n}_blocks_avgpool_True_lr_{lr:.5f}".replace(".", "_")] = LinearClassifier(
                width, use_n_blocks=n, use_avgpool=True, num_classes=NUM_CLASSES)
        grid = AllClassifiers(heads)
        deterministic_fill(grid, SALT + ":grid")
        grid_logits = {name: logits.clone() for name, logits in grid(tokens).items()}

        seg = LinearHead(in_channels=[BACKBONE["embed_dim"]], n_output_channels=NUM_CLASSES)
        seg.batchnorm_layer = torch.nn.BatchNorm2d(seg.channels)  # SyncBatchNorm's keys and eval maths, on CPU
        deterministic_fill(seg, SALT + ":seg")
        seg.eval()
        patch_maps = backbone.get_intermediate_layers(x, n=[BACKBONE["depth"] - 1], reshape=True,
                                                      return_class_token=False)
        seg_logits = seg.predict(list(patch_maps), rescale_to=IMAGE_SIZE)
    fixture = {"config": {"backbone": BACKBONE, "image_size": IMAGE_SIZE, "salt": SALT, "num_classes": NUM_CLASSES,
                          "grid": GRID},
               "grid": {"keys": key_shapes(grid), "logits": grid_logits},
               "seg": {"keys": {f"segmentation_model.1.{k}": v for k, v in key_shapes(seg).items()},
                       "logits": seg_logits.clone()}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    torch.save(fixture, args.out)
    print(f"wrote {args.out}: {len(fixture['grid']['keys'])} grid keys, {len(fixture['seg']['keys'])} seg keys")


if __name__ == "__main__":
    main()
