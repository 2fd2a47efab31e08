"""CHMv2's mixed-log bins and its bins -> height normalisation (``chmv2_mixlog``) against a float64 transcription of
the formulas of the official ``dinov3/eval/depth/utils.py`` (bins over [min, max / 8], t from 1 to 0 weighting the
log spacing; relu, a shift of min(max(-min, 0), 1e-4) + 1e-8, sum-normalised weights, times 8)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dinobench.heads.depth import BinsToDepth, depth_bins


def reference_bins(lo, hi, n):
    top = hi / 8.0
    linear = np.linspace(lo, top, n)
    log = np.exp(np.linspace(math.log(lo), math.log(top), n))
    t = np.linspace(1.0, 0.0, n)
    return t * log + (1 - t) * linear


def reference_heights(logits, bins):
    y = np.maximum(logits, 0.0)
    shift = np.clip(-y.min(axis=1, keepdims=True), 0.0, 1e-4) + 1e-8
    y = y + shift
    weights = y / np.maximum(y.sum(axis=1, keepdims=True), 1e-12)
    return np.maximum((weights * np.maximum(bins, 1e-12)[None, :, None, None]).sum(axis=1, keepdims=True), 1e-12) * 8.0


def test_chmv2_bins_and_heights_equal_the_formula():
    bins = depth_bins(0.001, 96.0, 256, "chmv2_mixlog")
    np.testing.assert_allclose(bins.double().numpy(), reference_bins(0.001, 96.0, 256), rtol=1e-5, atol=1e-6)
    assert bins[0] == pytest.approx(0.001) and bins[-1] == pytest.approx(12.0)
    logits = torch.randn(2, 256, 3, 4, generator=torch.Generator().manual_seed(0))
    logits[0, :, 0, 0] = -1.0  # every logit negative: relu gives zeros, the shift keeps the weights defined
    heights = BinsToDepth(0.001, 96.0, "chmv2_mixlog", "chmv2_mixlog")(logits)
    expected = reference_heights(logits.double().numpy(), reference_bins(0.001, 96.0, 256))
    assert heights.shape == (2, 1, 3, 4)
    np.testing.assert_allclose(heights.double().numpy(), expected, rtol=1e-5)
    assert 0 < float(heights.min()) and float(heights.max()) <= 96.0
