"""Keypoint correspondence: on feature maps whose correct matches are known (the target map is the source map
shifted or mirrored) nearest-neighbour transfer gives PCK 100, on an unrelated target it fails; PCK and
recall@px equal a hand computation; soft-argmax refines within its window; spair-correspondence and
pairs-correspondence run end to end on synthetic pairs in the real layouts (identity pairs: PCK 100)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dinobench.data.correspondence import build_pairs, build_spair
from dinobench.synthetic.retrieval import write_synthetic_pairs
from dinobench.errors import DataError
from dinobench.metrics.correspondence import pck_threshold
from dinobench.protocols.correspondence import match_keypoints
from helpers import run_task


def _map(d=32, h=6, w=8, seed=0):
    return torch.nn.functional.normalize(torch.randn(d, h, w, generator=torch.Generator().manual_seed(seed)), dim=0)


def test_matching_features_give_pck_100_and_unrelated_ones_fail():
    source = _map()
    size = (64, 48)  # (width, height): cells of 8 x 8 pixels
    cells = np.array([[x, y] for y in range(6) for x in range(8)])
    keypoints = cells * 8 + 4.0  # cell centres
    shifted = torch.roll(source, shifts=(1, 2), dims=(1, 2))  # content moves 1 cell down, 2 right (wrapping)
    predicted, mutual = match_keypoints(source, shifted, keypoints, size, size)
    expected = ((cells + [2, 1]) % [8, 6]) * 8 + 4.0
    np.testing.assert_allclose(predicted, expected)
    assert mutual.all()
    mirrored = source.flip(2)
    predicted, _ = match_keypoints(source, mirrored, keypoints, size, size)
    np.testing.assert_allclose(predicted, np.stack([64 - keypoints[:, 0], keypoints[:, 1]], axis=1))
    predicted, _ = match_keypoints(source, _map(seed=1), keypoints, size, size)
    error = np.linalg.norm(predicted - keypoints, axis=1)
    assert (error <= 0.1 * pck_threshold(None, size)).mean() < 0.3  # a map that does not match must fail


def test_soft_argmax_moves_towards_the_similar_neighbour():
    source = torch.zeros(2, 1, 3)
    source[0, 0, 0] = 1.0
    target = torch.zeros(2, 1, 3)
    target[:, 0, 1] = torch.tensor([1.0, 0.0])  # best cell: the middle one
    target[:, 0, 2] = torch.tensor([0.8, 0.6])  # its right neighbour is similar too
    hard, _ = match_keypoints(source, target, np.array([[2.0, 1.0]]), (12, 4), (12, 4))
    soft, _ = match_keypoints(source, target, np.array([[2.0, 1.0]]), (12, 4), (12, 4), refine="soft_argmax",
                              window=1, temperature=0.1)
    assert hard[0, 0] == 6.0 and 6.0 < soft[0, 0] < 10.0
    weights = torch.softmax(torch.tensor([0.0, 1.0, 0.8]) / 0.1, dim=0)
    assert soft[0, 0] == pytest.approx(float((weights * torch.tensor([2.0, 6.0, 10.0])).sum()), rel=1e-5)


def test_pck_and_recall_equal_a_hand_computation_on_the_same_predictions(run_cli, tmp_path):
    root = write_synthetic_pairs(tmp_path / "pairs", n_val=3)
    record, _ = run_task(run_cli, "pairs-correspondence", root, tmp_path / "out", "protocol.pixel_thresholds=[3,6]")
    rows = {row["category"]: row for row in record["tables"]["per_category"]}
    assert rows["identity"]["PCK@0.1"] == 100.0 and rows["identity"]["pairs"] == 3
    # the same predictions, from features computed here, scored by hand
    import dinobench
    from dinobench.backbones.contract import backbone_normalisation
    from dinobench.data.square import SquareTransform
    from dinobench.features.kinds import patch_tokens
    from dinobench.protocols.correspondence import feature_map

    torch.manual_seed(0)  # the run's seed: the same random-init weights
    model = dinobench.create_backbone("vit_tiny", embed_dim=64, depth=2, num_heads=2).eval()
    dataset = build_pairs({}, str(root))["test"]
    transform = SquareTransform(64, *backbone_normalisation(model))
    with torch.inference_mode():
        maps = [feature_map(patch_tokens(model, transform(dataset.image(i))[None])[0], None) for i in range(len(dataset))]
    per_pair, errors = [], []
    for pair in dataset.pairs:
        predicted, _ = match_keypoints(maps[pair.source], maps[pair.target], pair.source_keypoints,
                                       dataset.sizes[pair.source], dataset.sizes[pair.target])
        error = np.sqrt(((predicted - pair.target_keypoints) ** 2).sum(axis=1))
        per_pair.append(100 * np.mean(error <= 0.1 * 64))  # target box = the whole 64 x 48 image
        errors.append(error)
    errors = np.concatenate(errors)
    metrics = record["metrics"]
    assert metrics["PCK@0.1"] == pytest.approx(np.mean(per_pair))
    assert metrics["PCK@0.1_keypoints"] == pytest.approx(100 * np.mean(errors <= 6.4))
    assert metrics["recall@3px"] == pytest.approx(100 * np.mean(errors <= 3))
    assert metrics["recall@6px"] == pytest.approx(100 * np.mean(errors <= 6))


def test_spair_layout_end_to_end_and_errors(run_cli, tmp_path):
    root = write_synthetic_pairs(tmp_path / "spair", n_val=2, layout="spair")
    record, _ = run_task(run_cli, "spair-correspondence", root, tmp_path / "out")
    assert record["protocol"] == "correspondence" and record["main_metric"]["name"] == "PCK@0.1"
    assert {row["category"] for row in record["tables"]["per_category"]} == {"identity", "shifted", "flipped"}
    assert record["dataset"]["splits"]["test"]["pairs"] == 6
    with pytest.raises(DataError, match="SPair-71k pair annotations missing"):
        build_spair({}, str(tmp_path))
    next((root / "JPEGImages" / "flipped").glob("*.png")).unlink()
    with pytest.raises(DataError, match="which does not exist"):
        build_spair({}, str(root))
