"""Regenerate tests/fixtures/m2f_tta_official.pt from an official DINOv3 checkout (facebookresearch/dinov3).

    PYTHONPATH=<dir with torchmetrics, omegaconf> python scripts/m2f_tta_golden.py --official /path/to/dinov3 \
        [--out tests/fixtures/m2f_tta_official.pt]

The official ADE20K Mask2Former evaluation with test-time augmentation (config-ade20k-m2f-inference.yaml: 5 scale
ratios x horizontal flip, sliding windows), run by the official code end to end on small inputs: a tiny ADE20K
layout is written to a temporary directory, read by the official ``make_dataset("ADE20K:split=VAL")`` with the
transforms ``test_segmentation`` builds (``make_segmentation_eval_transforms(use_tta=True, tta_ratios=...)``) and a
batch-1 ``make_data_loader``, and evaluated by the official ``evaluate_segmentation_model`` (``make_inference`` per
view, slide inference, softmax, averaging, argmax) around :class:`dinobench.testing.TinyMaskPredictor` on the CPU
in float32. The per-view outputs of ``make_inference`` are recorded on the way (and summed as that loop sums them,
giving the class probabilities it takes the argmax of), and so is the prediction map it scores.

Two cases at short side 64 (the release: 896): a landscape image larger than its views (views downscaled) and a
near-square smaller one whose views below ratio 1 are smaller than the window on both sides (the official square
window). The fixture keeps the images, the settings, the view sizes and checksums, the probabilities at the label's
size and the prediction maps; tests/segmentation/test_m2f_tta.py runs dinobench's evaluation on them.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from dinobench.testing import TinyMaskPredictor, portable_noise

RATIOS = [0.9, 0.95, 1.0, 1.05, 1.1]
NUM_CLASSES = 3
MODEL = dict(num_classes=NUM_CLASSES, num_queries=4, dim=8, salt="m2f-tta-golden-v1")
#: (name, original (H, W), short side, window, stride)
CASES = [("landscape", (66, 100), 64, 64, 40), ("near_square", (50, 52), 64, 68, 40)]


def case_image(size: tuple[int, int], seed: int) -> np.ndarray:
    """A fixed 8-bit RGB image ``[H, W, 3]``: coarse colour blocks plus fine noise (the same on every CPU)."""
    gen = torch.Generator().manual_seed(seed)
    blocks = portable_noise((3, 5, 7), gen, torch.float64)
    coarse = torch.nn.functional.interpolate(blocks[None], size=size, mode="nearest")[0]
    noise = portable_noise((3, *size), gen, torch.float64)
    pixels = (128 + 45 * coarse + 20 * noise).round().clamp(0, 255).to(torch.uint8)
    return pixels.permute(1, 2, 0).numpy()


def case_label(size: tuple[int, int], seed: int) -> np.ndarray:
    """A label map ``[H, W]`` in 0..NUM_CLASSES (0 = ignored after reduce_zero_label, as in ADE20K)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, NUM_CLASSES + 1, size, generator=gen).to(torch.uint8).numpy()


class _Wrapped(torch.nn.Module):
    """What ``evaluate_segmentation_model`` expects of its DDP model: the segmentor under ``.module``."""

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self.module = module


def run_official(case: tuple[Any, ...], seed: int) -> dict[str, Any]:
    """The official TTA evaluation of one case (module docstring) and what it recorded."""
    from dinov3.data import DatasetWithEnumeratedTargets, make_data_loader, make_dataset
    from dinov3.eval.segmentation import eval as official_eval
    from dinov3.eval.segmentation.config import DEFAULT_MEAN, DEFAULT_STD
    from dinov3.eval.segmentation.transforms import make_segmentation_eval_transforms

    name, size, short_side, crop, stride = case
    image, label = case_image(size, seed), case_label(size, seed + 1)
    views: list[tuple[torch.Tensor, torch.Tensor]] = []
    scored: list[torch.Tensor] = []
    make_inference, intersect_and_union = official_eval.make_inference, official_eval.calculate_intersect_and_union

    def recording_inference(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        out = make_inference(x, *args, **kwargs)
        views.append((x.clone(), out.clone()))
        return out

    def recording_metric(pred: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        scored.append(pred.clone())
        return intersect_and_union(pred, *args, **kwargs)

    with tempfile.TemporaryDirectory() as root:
        for kind, array in (("images", image), ("annotations", label)):
            (Path(root) / kind / "validation").mkdir(parents=True)
            Image.fromarray(array).save(Path(root) / kind / "validation" / f"{name}.png")
        (Path(root) / "ADE20K_object150_val.txt").write_text(f"validation/{name}.png\n")
        transforms = make_segmentation_eval_transforms(img_size=short_side, inference_mode="slide", use_tta=True,
                                                       tta_ratios=RATIOS, mean=DEFAULT_MEAN, std=DEFAULT_STD)
        dataset = DatasetWithEnumeratedTargets(make_dataset(dataset_str=f"ADE20K:split=VAL:root={root}",
                                                            transforms=transforms))
        loader = make_data_loader(dataset=dataset, batch_size=1, num_workers=0, sampler_type=None, drop_last=False,
                                  shuffle=False, persistent_workers=False)
        model = _Wrapped(TinyMaskPredictor(**MODEL).eval())
        official_eval.make_inference, official_eval.calculate_intersect_and_union = recording_inference, \
            recording_metric
        try:
            with contextlib.redirect_stdout(sys.stderr):
                metrics = official_eval.evaluate_segmentation_model(
                    model, loader, device="cpu", eval_res=crop, eval_stride=stride, decoder_head_type="m2f",
                    num_classes=NUM_CLASSES, autocast_dtype=torch.float32)
        finally:
            official_eval.make_inference, official_eval.calculate_intersect_and_union = make_inference, \
                intersect_and_union
    # the loop's own aggregation: float32 zeros at the label's size, every view's output added in order, divided
    probs = torch.zeros(1, NUM_CLASSES, *size)
    for _, out in views:
        probs += out
    probs = probs / len(views)
    (prediction,) = scored
    assert torch.equal(probs.argmax(dim=1, keepdim=True)[0], prediction), "aggregation differs from the loop's"
    return {"name": name, "image": torch.from_numpy(image.copy()), "label_size": list(size),
            "short_side": short_side, "crop_size": crop, "stride": stride,
            "view_sizes": [list(x.shape[-2:]) for x, _ in views],
            "view_sums": torch.tensor([float(x.double().sum()) for x, _ in views], dtype=torch.float64),
            "probs": probs, "prediction": prediction[0].to(torch.uint8), "official_metrics": metrics}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", required=True, help="path of a facebookresearch/dinov3 checkout")
    parser.add_argument("--out", default="tests/fixtures/m2f_tta_official.pt")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(args.official).resolve()))
    from dinov3.data.transforms import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    cases = [run_official(case, seed=100 + 10 * i) for i, case in enumerate(CASES)]
    fixture = {"cases": cases, "config": {"ratios": RATIOS, "flip": True, "model": MODEL,
                                          "mean": list(IMAGENET_DEFAULT_MEAN), "std": list(IMAGENET_DEFAULT_STD)}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    torch.save(fixture, args.out)
    for case in cases:
        print(f"{case['name']}: image {tuple(case['image'].shape)}, views {case['view_sizes']}")
    print(f"wrote {args.out} ({Path(args.out).stat().st_size} bytes)")


if __name__ == "__main__":
    main()
