"""Relative depth: the least-squares scale-and-shift alignment equals the official ``align_depth_least_square`` on
the same inputs (tests/fixtures/depth_align_official.json, scripts/depth_align_golden.py), the metric applies it in
the official order, and the released SynthMix depther is evaluated as its official inference config says."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import FIXTURES
from dinobench.metrics.dense import DepthMetric, align_least_squares
from dinobench.plugin_manager import get_registries
from dinobench.resolve import resolve_task

GOLDEN = json.loads((FIXTURES / "depth_align_official.json").read_text())["cases"]


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_alignment_equals_the_official_function(name):
    case = GOLDEN[name]
    gt, pred = torch.tensor(case["gt"], dtype=torch.float64), torch.tensor(case["pred"], dtype=torch.float64)
    valid = torch.tensor(case["valid"])
    aligned = align_least_squares(pred, gt, valid)
    # the official solves in float32 (its prediction is cast to float32 first): equal to float32 precision
    np.testing.assert_allclose(aligned.numpy(), np.asarray(case["aligned"]), rtol=2e-5, atol=2e-5)
    assert not torch.equal(aligned, pred)


def test_the_metric_aligns_before_clamping_and_only_when_asked():
    torch.manual_seed(0)
    gt = torch.rand(24, 32, dtype=torch.float64) * 8 + 0.5
    pred = 0.25 * gt - 1.0  # a relative prediction: right up to scale and shift, partly negative
    plain, aligned = DepthMetric(1e-3, 10.0), DepthMetric(1e-3, 10.0, align_least_squares=True)
    plain.update(pred, gt)
    aligned.update(pred, gt)
    assert aligned.compute()["rmse"] == pytest.approx(0.0, abs=1e-9) and aligned.compute()["a1"] == 1.0
    assert plain.compute()["rmse"] > 3.0  # what the unaligned metric says of the same prediction


def test_the_released_synthmix_depther_runs_its_official_evaluation():
    spec = get_registries().heads.get("dinov3_vit7b16_dd")
    options = {k: v for k, v in spec.options.items() if k != spec.weights_key}
    cfg = resolve_task("nyu-dpt", options)
    assert cfg["protocol"]["inference"]["align_least_squares"] is True and cfg["protocol"]["inference"]["flip"]
    assert cfg["transform"]["eval"]["scale"] == 768  # config-nyu-synthmix-dpt-inference.yaml: img_size 768
    assert resolve_task("nyu-dpt", None)["protocol"]["inference"]["align_least_squares"] is None  # trained: off
