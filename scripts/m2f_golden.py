"""Regenerate tests/fixtures/m2f_official.pt from an official DINOv3 checkout (facebookresearch/dinov3).

    python scripts/m2f_golden.py --official /path/to/dinov3 [--out tests/fixtures/m2f_official.pt]

Builds the official ``build_segmentation_decoder(backbone, decoder_type="m2f", hidden_dim=64, num_classes=7)``
around a tiny dinobench DINOv3 ViT (patch 16, dim 64, 4 blocks), fills every tensor with
:func:`dinobench.testing.deterministic_fill` (values depend on key names only), runs the official
``predict`` on fixed inputs in float32 on the CPU, and saves the key layout (names and shapes) and the
outputs. tests/segmentation/test_mask2former.py rebuilds the same model with dinobench's code, fills it the same way and
compares. Needs ``torchmetrics`` and ``omegaconf`` (imported by the official eval package), not a GPU.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import torch

from dinobench.backbones import create_backbone
from dinobench.testing import deterministic_fill, key_shapes, portable_noise

#: the tiny configuration shared with the test
BACKBONE = dict(name="vitb16", embed_dim=64, depth=4, num_heads=2, ffn_ratio=2.0)
HIDDEN_DIM, NUM_CLASSES = 64, 7
IMAGE_SIZE = (64, 96)  # multiples of 32, non-square
RESCALE_TO = (16, 24)  # small outputs keep the fixture small
SALT = "m2f-golden-v1"


def tiny_backbone() -> torch.nn.Module:
    """The backbone the fixture was made with (weights filled deterministically)."""
    cfg = dict(BACKBONE)
    model = create_backbone(cfg.pop("name"), **cfg)
    return deterministic_fill(model, SALT + ":backbone").eval()


def inputs() -> torch.Tensor:
    """The fixed input batch (the same on every CPU)."""
    gen = torch.Generator().manual_seed(1234)
    return portable_noise((2, 3, *IMAGE_SIZE), gen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", required=True, help="path of a facebookresearch/dinov3 checkout")
    parser.add_argument("--out", default="tests/fixtures/m2f_official.pt")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(args.official).resolve()))
    from dinov3.eval.segmentation.models import build_segmentation_decoder

    torch.manual_seed(0)
    with contextlib.redirect_stdout(sys.stderr):  # the official adapter prints its settings
        model = build_segmentation_decoder(tiny_backbone(), decoder_type="m2f", hidden_dim=HIDDEN_DIM,
                                           num_classes=NUM_CLASSES)
    model.autocast_ctx = contextlib.nullcontext  # float32 on CPU
    head_and_adapter = [k for k in model.state_dict() if not k.startswith("segmentation_model.0.backbone.")]
    deterministic_fill(model, SALT)
    deterministic_fill(model.segmentation_model[0].backbone, SALT + ":backbone")
    model.eval()
    x = inputs()
    with torch.no_grad():
        features = model.segmentation_model[0](x)
        out = model.predict(x, rescale_to=RESCALE_TO)
    fixture = {
        "keys": key_shapes(model),
        "head_keys": head_and_adapter,
        "adapter": {k: v.clone() for k, v in features.items()},
        "pred_logits": out["pred_logits"].clone(),
        "pred_masks": out["pred_masks"].clone(),
        "aux_logits": torch.stack([a["pred_logits"] for a in model.segmentation_model[1](features)["aux_outputs"]]),
        "config": {"backbone": BACKBONE, "hidden_dim": HIDDEN_DIM, "num_classes": NUM_CLASSES,
                   "image_size": IMAGE_SIZE, "rescale_to": RESCALE_TO, "salt": SALT},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    torch.save(fixture, args.out)
    print(f"wrote {args.out}: {len(fixture['keys'])} keys, pred_logits {tuple(out['pred_logits'].shape)}, "
          f"pred_masks {tuple(out['pred_masks'].shape)}")


if __name__ == "__main__":
    main()
