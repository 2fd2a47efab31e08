"""Keypoint correspondence: the matched pixels and PCK equal DIFT's eval_spair.py on fixed maps (golden fixture,
boundary error included); on feature maps whose correct matches are known (the target map is the source map
shifted or mirrored) nearest-neighbour transfer gives PCK 100, on an unrelated target it fails; PCK and
recall@px equal a hand computation; soft-argmax refines within its window; spair-correspondence and
pairs-correspondence run end to end on synthetic pairs in the real layouts (identity pairs: PCK 100)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dinobench.data.correspondence import build_pairs, build_spair
from dinobench.synthetic.retrieval import write_synthetic_pairs
from dinobench.errors import DataError
from dinobench.metrics.correspondence import pck, pck_threshold
from dinobench.protocols.correspondence import CorrespondenceProtocol, match_keypoints
from dinobench.errors import ConfigError
from conftest import FIXTURES
from helpers import run_task

#: DIFT's eval_spair.py run on fixed maps (scripts/correspondence_golden.py)
OFFICIAL = json.loads((FIXTURES / "pck_official.json").read_text())


def _official_pairs():
    """(pair record, source map, target map, source size, target size) of every fixture pair; raw maps."""
    images = OFFICIAL["images"]
    for pair in OFFICIAL["pairs"]:
        src, trg = images[pair["source"]], images[pair["target"]]
        yield (pair, torch.tensor(src["features"]), torch.tensor(trg["features"]), tuple(src["size"]),
               tuple(trg["size"]))


def test_matched_pixels_equal_dift_eval_spair():
    """Maps upsampled to each image's own size, the argmax pixel's (column, row) as the prediction with no
    half-pixel offset, ties to the first pixel (the border plateaus of 2 x 2 grids): pixel for pixel."""
    for pair, source, target, src_size, trg_size in _official_pairs():
        keypoints = np.array(pair["source_keypoints"], dtype=np.float64)
        predicted, _ = match_keypoints(source, target, keypoints, src_size, trg_size)
        np.testing.assert_array_equal(predicted, np.array(pair["predicted"], dtype=np.float64),
                                      err_msg=pair["category"])


def test_pck_equals_dift_eval_spair_including_an_error_of_exactly_alpha():
    """Correct counts per pair, per-image and per-point PCK@0.1 as the reference printed them; the boundary pair's
    error of exactly 0.1 x the box's larger side counts as correct (``<=``), sqrt(2) px of 10 px does not."""
    per_pair, correct, total = [], 0, 0
    for pair, source, target, src_size, trg_size in _official_pairs():
        predicted, _ = match_keypoints(source, target, np.array(pair["source_keypoints"], dtype=np.float64),
                                       src_size, trg_size)
        for points in (predicted, np.array(pair["predicted"], dtype=np.float64)):  # ours, then the reference's
            errors = np.linalg.norm(points - np.array(pair["target_keypoints"]), axis=1)
            normalised = errors / pck_threshold(tuple(pair["target_bbox"]), trg_size)
            assert round(pck(normalised, 0.1) * len(errors) / 100) == pair["correct_at_0.1"], pair["category"]
        if pair["category"] == "boundary":
            np.testing.assert_array_equal(normalised, [0.1, np.sqrt(2) / 10, 0.0, 0.1])
        per_pair.append(pck(normalised, 0.1))
        correct += pair["correct_at_0.1"]
        total += len(normalised)
    assert f"{np.mean(per_pair):.2f}" == f"{OFFICIAL['printed_totals']['per_image']:.2f}"
    assert f"{100 * correct / total:.2f}" == f"{OFFICIAL['printed_totals']['per_point']:.2f}"


def test_reference_convention_predicts_pixel_indices_and_rejects_a_resolution():
    """Full-resolution maps (no interpolation): a target map shifted by (3, 1) pixels moves every match by exactly
    (3, 1), with no half-pixel offset; the cell-centre option adds it; resolution needs the cell-centre option."""
    source = torch.randn(16, 12, 20, generator=torch.Generator().manual_seed(3))
    target = torch.roll(source, shifts=(1, 3), dims=(1, 2))
    keypoints = np.array([[2.0, 3.0], [10.0, 5.0], [15.0, 9.0]])
    predicted, mutual = match_keypoints(source, target, keypoints, (20, 12), (20, 12))
    np.testing.assert_array_equal(predicted, keypoints + [3, 1])
    assert mutual.all()
    unit = torch.nn.functional.normalize
    centres, _ = match_keypoints(unit(source, dim=0), unit(target, dim=0), keypoints, (20, 12), (20, 12),
                                 convention="cell_centre")
    np.testing.assert_array_equal(centres, keypoints + [3.5, 1.5])
    with pytest.raises(ConfigError, match="keypoint_convention='cell_centre'"):
        CorrespondenceProtocol({"resolution": 224})
    assert CorrespondenceProtocol({"resolution": 224, "keypoint_convention": "cell_centre"}).config.resolution == 224


def _map(d=32, h=6, w=8, seed=0):
    return torch.nn.functional.normalize(torch.randn(d, h, w, generator=torch.Generator().manual_seed(seed)), dim=0)


def test_matching_features_give_pck_100_and_unrelated_ones_fail():
    """The cell-centre option (v1) on the patch grid: shifted and mirrored maps are matched cell for cell."""
    source = _map()
    size = (64, 48)  # (width, height): cells of 8 x 8 pixels
    cells = np.array([[x, y] for y in range(6) for x in range(8)])
    keypoints = cells * 8 + 4.0  # cell centres
    shifted = torch.roll(source, shifts=(1, 2), dims=(1, 2))  # content moves 1 cell down, 2 right (wrapping)
    predicted, mutual = match_keypoints(source, shifted, keypoints, size, size, convention="cell_centre")
    expected = ((cells + [2, 1]) % [8, 6]) * 8 + 4.0
    np.testing.assert_allclose(predicted, expected)
    assert mutual.all()
    mirrored = source.flip(2)
    predicted, _ = match_keypoints(source, mirrored, keypoints, size, size, convention="cell_centre")
    np.testing.assert_allclose(predicted, np.stack([64 - keypoints[:, 0], keypoints[:, 1]], axis=1))
    predicted, _ = match_keypoints(source, _map(seed=1), keypoints, size, size, convention="cell_centre")
    error = np.linalg.norm(predicted - keypoints, axis=1)
    assert (error <= 0.1 * pck_threshold(None, size)).mean() < 0.3  # a map that does not match must fail


def test_soft_argmax_moves_towards_the_similar_neighbour():
    source = torch.zeros(2, 1, 3)
    source[0, 0, 0] = 1.0
    target = torch.zeros(2, 1, 3)
    target[:, 0, 1] = torch.tensor([1.0, 0.0])  # best cell: the middle one
    target[:, 0, 2] = torch.tensor([0.8, 0.6])  # its right neighbour is similar too
    hard, _ = match_keypoints(source, target, np.array([[2.0, 1.0]]), (12, 4), (12, 4), convention="cell_centre")
    soft, _ = match_keypoints(source, target, np.array([[2.0, 1.0]]), (12, 4), (12, 4), refine="soft_argmax",
                              window=1, temperature=0.1, convention="cell_centre")
    assert hard[0, 0] == 6.0 and 6.0 < soft[0, 0] < 10.0
    weights = torch.softmax(torch.tensor([0.0, 1.0, 0.8]) / 0.1, dim=0)
    assert soft[0, 0] == pytest.approx(float((weights * torch.tensor([2.0, 6.0, 10.0])).sum()), rel=1e-5)
    # the reference convention on a map at the image's size (no interpolation): pixel indices, same weights
    soft, _ = match_keypoints(source, target, np.array([[0.0, 0.0]]), (3, 1), (3, 1), refine="soft_argmax",
                              window=1, temperature=0.1)
    assert soft[0, 0] == pytest.approx(float((weights * torch.tensor([0.0, 1.0, 2.0])).sum()), rel=1e-5)


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
        maps = [feature_map(patch_tokens(model, transform(dataset.image(i))[None])[0], None, normalise=False)
                for i in range(len(dataset))]  # raw: the reference convention normalises after upsampling
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
