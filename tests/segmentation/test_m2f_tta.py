"""The Mask2Former evaluation with test-time augmentation equals the official one: on the fixture's images
(tests/fixtures/m2f_tta_official.pt, made by scripts/m2f_tta_golden.py with the official evaluation loop of
config-ade20k-m2f-inference.yaml: 5 scale ratios x flip, sliding windows) and the same tiny fixed model, dinobench's
views are the official ones bit for bit and its class probabilities equal the official ones; one view, or the
rules of protocol version 1, would not."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from conftest import FIXTURES
from dinobench.data.dense import image_to_tensor
from dinobench.data.seg_tta import SegTTAViews
from dinobench.dense_inference import slide_windows
from dinobench.heads.mask2former.segmentor import M2FSegmentor
from dinobench.protocols.m2f_seg import M2FSegProtocol
from dinobench.testing import TinyMaskPredictor

FIXTURE = torch.load(FIXTURES / "m2f_tta_official.pt", weights_only=True)
CONFIG = FIXTURE["config"]
#: measured 0.0 on the CPU that made the fixture; the window scores are rounded to bfloat16 (as the official code
#: does), so a last-bit float32 difference on another CPU can move one of them by a bfloat16 step (simulated:
#: < 1e-5 in the probabilities). Exact float32 window scores are off by 7e-4, one view by 0.1.
TOLERANCE = 5e-5


class _Segmentor(TinyMaskPredictor):
    """The fixture's model with dinobench's :meth:`M2FSegmentor.semantic`; windows unpadded, as the official
    ``predict`` takes them (a real segmentor pads to multiples of 32, which official-size windows already are)."""

    pad_multiple = 1
    semantic = M2FSegmentor.semantic


def _views(case: dict, scales: list[float]) -> list[torch.Tensor]:
    image = image_to_tensor(Image.fromarray(case["image"].numpy()))
    return SegTTAViews(case["short_side"], scales, CONFIG["mean"], CONFIG["std"])({"image": image})["views"]


def _probabilities(case: dict, **inference) -> torch.Tensor:
    settings = {"scales": CONFIG["ratios"], "flip": CONFIG["flip"], "crop_size": case["crop_size"],
                "stride": case["stride"], **inference}
    protocol = M2FSegProtocol({"inference": settings})
    protocol.num_classes = CONFIG["model"]["num_classes"]
    model = _Segmentor(**CONFIG["model"]).eval()
    views = [view[None] for view in _views(case, settings["scales"])]
    return protocol.class_scores(model, views, case["label_size"])


@pytest.mark.parametrize("case", FIXTURE["cases"], ids=[c["name"] for c in FIXTURE["cases"]])
def test_views_are_the_official_ones(case):
    views = _views(case, CONFIG["ratios"])
    mirrored = views * 2  # the official list: every scale, then every mirrored scale (same pixel sums)
    assert [list(v.shape[-2:]) for v in mirrored] == case["view_sizes"]
    assert torch.equal(torch.tensor([float(v.double().sum()) for v in mirrored], dtype=torch.float64),
                       case["view_sums"])


@pytest.mark.parametrize("case", FIXTURE["cases"], ids=[c["name"] for c in FIXTURE["cases"]])
def test_tta_probabilities_equal_the_official_and_one_view_does_not(case):
    official = case["probs"]
    ours = _probabilities(case)
    assert ours.shape == official.shape and ours.dtype == official.dtype
    diff = float((ours - official).abs().max())
    assert diff <= TOLERANCE, f"{case['name']}: max abs diff {diff:.3g} from the official TTA"
    assert torch.equal(ours.argmax(1)[0].to(torch.uint8), case["prediction"])
    assert float((_probabilities(case, scales=[1.0], flip=False) - official).abs().max()) > 1e-2
    assert float((_probabilities(case, score_dtype="float32") - official).abs().max()) > 1e-4


def test_a_view_smaller_than_the_window_is_slid_over_by_a_square_window():
    # official slide_inference: both sides below the window -> a square of the shorter side (the near-square case's
    # views at ratios 0.9-1.0: 64 x 67 under a 68 window); mmseg (the default) clips the window to the image
    assert slide_windows(64, 67, 68, 40, square_small=True) == [(0, 64, 0, 64), (0, 64, 3, 67)]
    assert slide_windows(64, 67, 68, 40) == [(0, 64, 0, 67)]
    assert slide_windows(67, 70, 68, 40, square_small=True) == [(0, 67, 0, 68), (0, 67, 2, 70)]  # one side only
