"""Unsupervised object discovery: TokenCut and LOST find the object on patch features where one object's patches
agree with each other and not with the background; CorLoc and IoU equal a hand computation; the VOC / COCO20k
layouts are read with their box conventions; the three tasks run end to end on synthetic data."""

from __future__ import annotations

import numpy as np
import pytest

from dinobench.data.discovery import build_coco20k, build_voc07
from dinobench.synthetic.retrieval import write_synthetic_discovery
from dinobench.errors import DataError
from dinobench.metrics.discovery import box_iou, corloc
from dinobench.protocols.discovery import component_box, lost, to_pixels, tokencut
from helpers import run_task


def one_object_features(h=8, w=10, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    background = rng.normal(size=dim)
    background /= np.linalg.norm(background)
    features = background + 0.3 * rng.normal(size=(h, w, dim)) / np.sqrt(dim)
    obj = np.zeros((h, w), dtype=bool)
    obj[2:5, 6:9] = True  # cells x 6..8, y 2..4
    features[obj] = -background + 0.3 * rng.normal(size=(obj.sum(), dim)) / np.sqrt(dim)
    return features, obj


@pytest.mark.parametrize("method", ["tokencut", "lost"])
def test_methods_find_the_object(method):
    features, obj = one_object_features()
    mask, seed = tokencut(features) if method == "tokencut" else lost(features)
    assert obj.ravel()[seed]
    assert component_box(mask, seed) == (6, 2, 9, 5)
    np.testing.assert_array_equal(mask, obj)


def test_component_box_keeps_the_seed_component_only():
    mask = np.zeros((6, 6), dtype=bool)
    mask[0:2, 0:2] = True
    mask[4:6, 3:6] = True
    assert component_box(mask, seed=4 * 6 + 3) == (3, 4, 6, 6)
    assert component_box(mask, seed=0) == (0, 0, 2, 2)
    assert component_box(mask, seed=3) == (3, 0, 4, 1)  # seed outside the mask: its own cell


def test_iou_and_corloc_by_hand():
    truth = np.array([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 40.0]])
    assert box_iou(np.array([0.0, 0.0, 10.0, 5.0]), truth)[0] == pytest.approx(0.5)
    assert box_iou(np.array([5.0, 5.0, 15.0, 15.0]), truth)[0] == pytest.approx(25 / 175)
    predictions = [np.array([0.0, 0.0, 10.0, 5.0]),  # IoU exactly 0.5 with the first box: a hit
                   np.array([20.0, 20.0, 30.0, 30.0]),  # 0.5 with the second box
                   np.array([0.0, 0.0, 10.0, 4.9]),  # 0.49
                   np.array([50.0, 50.0, 60.0, 60.0])]
    value, hits = corloc(predictions, [truth] * 4)
    assert hits.tolist() == [True, True, False, False] and value == 50.0
    assert to_pixels((6, 2, 9, 5), (8, 10), (100, 80)).tolist() == [60.0, 20.0, 90.0, 50.0]


def test_layouts_and_box_conventions(tmp_path):
    voc = write_synthetic_discovery(tmp_path / "voc", n_train=3)
    coco = write_synthetic_discovery(tmp_path / "coco", n_train=3, layout="coco20k")
    a, b = build_voc07({}, str(voc))["trainval"], build_coco20k({}, str(coco))["trainval"]
    np.testing.assert_allclose(np.concatenate(a.boxes), np.concatenate(b.boxes))  # same scenes, same boxes
    assert a.sizes == b.sizes == [(80, 64)] * 3
    (voc / "Annotations" / "2009_000001.xml").write_text("<annotation><size>")
    with pytest.raises(DataError, match="2009_000001.xml: not a Pascal VOC annotation"):
        build_voc07({}, str(voc))


@pytest.mark.parametrize("task, layout", [("voc07-discovery", "voc"), ("voc12-discovery", "voc"),
                                          ("coco20k-discovery", "coco20k")])
def test_discovery_tasks_end_to_end(run_cli, tmp_path, task, layout):
    root = write_synthetic_discovery(tmp_path / "data", n_train=4, layout=layout)
    record, path = run_task(run_cli, task, root, tmp_path / "out", extra=("--save-predictions",))
    metrics = record["metrics"]
    assert record["protocol"] == "discovery" and metrics["CorLoc"] == metrics["CorLoc_tokencut"]
    assert {"CorLoc_tokencut", "CorLoc_lost"} <= set(metrics) and len(record["tables"]["per_image"]) == 4
    assert record["dataset"]["splits"]["trainval"]["boxes"] == 4
    assert (path.parent / "predictions" / "discovery_000.png").is_file()
