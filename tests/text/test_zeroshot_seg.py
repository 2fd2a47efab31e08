"""dino.txt zero-shot segmentation: the window scores equal an independent transcription of the official notebook's
``predict_slide`` / text-feature recipe, and ade20k-zeroshot runs end to end on the synthetic ADE20K layout."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from dinobench.backbones import create_backbone
from dinobench.synthetic.dense import write_synthetic_ade20k
from dinobench.dense_inference import dense_predict
from dinobench.protocols.zeroshot_seg import ZeroShotSegProtocol
from dinobench.text import build_dinotxt, tokenize
from dinobench.text.train import head_state
from dinobench.utils.seeding import seed_everything
from helpers import smoke_options

SIZES = dict(embed_dim=128, text_dim=64, text_heads=2, text_layers=1, context_length=16, vision_head_blocks=1)


def _model():
    seed_everything(0)
    backbone = create_backbone("vit_tiny", embed_dim=64, depth=2, num_heads=2)
    return build_dinotxt(backbone, **SIZES).eval()


def _notebook_slide(model, img, text_features, side, stride):
    """The notebook's predict_slide (on the CPU), written from its description."""
    _, H, W = img.shape
    probs, counts = torch.zeros(len(text_features), H, W), torch.zeros(H, W)
    for i in range(max(H - side + stride - 1, 0) // stride + 1):
        for j in range(max(W - side + stride - 1, 0) // stride + 1):
            y2, x2 = min(i * stride + side, H), min(j * stride + side, W)
            y1, x1 = max(y2 - side, 0), max(x2 - side, 0)
            window = img[:, y1:y2, x1:x2][None]
            P = model.visual_model.backbone.patch_size
            h, w = math.ceil(window.shape[2] / P) * P, math.ceil(window.shape[3] / P) * P
            if (h, w) != tuple(window.shape[2:]):
                window = F.interpolate(window, size=(h, w), mode="bicubic", align_corners=False)
            patches = model.visual_model(window)[2].reshape(1, h // P, w // P, -1)[0]  # backbone patch tokens
            cos = torch.einsum("cd,hwd->chw", text_features, F.normalize(patches, dim=-1))
            cos = F.interpolate(cos[None], size=(y2 - y1, x2 - x1), mode="bilinear", align_corners=False)[0]
            probs[:, y1:y2, x1:x2] += cos.softmax(0)
            counts[y1:y2, x1:x2] += 1
    return probs / counts


def test_slide_scores_equal_the_notebook_recipe():
    model = _model()
    protocol = ZeroShotSegProtocol({"model": SIZES, "templates": ["a photo of a {}.", "a {} in the scene."],
                                    "inference": {"mode": "slide", "crop_size": 48, "stride": 20}})
    names = ["wall", "sky", "tree"]
    with torch.no_grad():
        classes = protocol.class_features(model, names, "cpu")
        expected = []
        for name in names:  # the notebook: drop the CLS half, normalise, mean over templates, normalise
            feats = model.encode_text(tokenize([f"a photo of a {name}.", f"a {name} in the scene."], 16))
            expected.append(F.normalize(F.normalize(feats[:, 64:], dim=-1).mean(0), dim=-1))
        torch.testing.assert_close(classes, torch.stack(expected))
        image = torch.randn(3, 70, 90, generator=torch.Generator().manual_seed(1))

        def window(x):
            cos = torch.einsum("cd,bdhw->bchw", classes, protocol.patch_map(model, x))
            return F.interpolate(cos, size=x.shape[-2:], mode="bilinear", align_corners=False).softmax(1)

        ours = dense_predict(window, image[None], mode="slide", num_outputs=3, crop_size=48, stride=20)[0]
    torch.testing.assert_close(ours, _notebook_slide(model, image, classes, 48, 20), atol=1e-5, rtol=0)


def test_ade20k_zeroshot_runs_end_to_end(run_cli, tmp_path, monkeypatch):
    root = write_synthetic_ade20k(tmp_path / "ade", n_train=2, n_val=3)
    head = tmp_path / "head.pth"
    torch.save(head_state(_model()), head)
    options = [o for o in smoke_options("ade20k-zeroshot") if not o.startswith("protocol.head_weights=")]
    code, _, err = run_cli("run", "--backbone", "vit_tiny", "--task", "ade20k-zeroshot", "--data-root", str(root),
                           "--output", str(tmp_path / "out"), "--cfg-options", *options,
                           f"protocol.head_weights={head}", "protocol.templates=[\"a photo of a {}.\"]")
    assert code == 0, err
    (path,) = Path(tmp_path / "out").glob("vit_tiny/ade20k-zeroshot/*/result.json")
    record = json.loads(path.read_text())
    assert set(record["metrics"]) == {"mIoU", "aAcc", "mAcc"} and 0 <= record["metrics"]["aAcc"] <= 100
    assert len(record["tables"]["per_class_iou"]) == 150 and record["input_files"]["protocol.head_weights"]
