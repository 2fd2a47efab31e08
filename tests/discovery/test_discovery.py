"""Unsupervised object discovery: TokenCut and LOST find the object on patch features where one object's patches
agree with each other and not with the background; IoU and CorLoc equal LOST's / TokenCut's code bit for bit
(golden fixture: IoU exactly 0.5, thin, tiny, touching and degenerate boxes) and a hand computation; the VOC /
COCO20k layouts are read with their box conventions; the three tasks run end to end on synthetic data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dinobench.data.discovery import build_coco20k, build_voc07
from dinobench.synthetic.retrieval import write_synthetic_discovery
from dinobench.errors import DataError
from dinobench.metrics.discovery import box_iou, corloc
from dinobench.protocols.discovery import component_box, lost, to_pixels, tokencut
from conftest import FIXTURES
from helpers import run_task

#: LOST's / TokenCut's bbox_iou and CorLoc decision on fixed boxes (scripts/corloc_golden.py)
OFFICIAL = json.loads((FIXTURES / "corloc_official.json").read_text())


def _arrays(case: dict) -> tuple[np.ndarray, np.ndarray]:
    """The case's boxes with the dtypes the reference received ("mixed": float64 prediction, int64 truth)."""
    pred_dtype, truth_dtype = ("float64", "int64") if case["dtype"] == "mixed" else (case["dtype"], case["dtype"])
    return np.asarray(case["pred"], dtype=pred_dtype), np.asarray(case["truth"], dtype=truth_dtype)


@pytest.mark.parametrize("case", OFFICIAL["cases"], ids=[c["name"] for c in OFFICIAL["cases"]])
def test_iou_and_hit_equal_lost_and_tokencut(case):
    """Same IoU bits in the same dtype (float32 for integer boxes) and the same hit: an exact 0.5 misses in float64
    (the eps terms), hits with integer boxes of height >= 2, misses with height-1 ones; tiny boxes miss."""
    pred, truth = _arrays(case)
    ious = box_iou(pred, truth)
    assert str(ious.dtype) == case["iou_dtype"]
    assert ious.tolist() == case["ious"]
    assert corloc([pred], [truth])[1].tolist() == [case["hit"]]


def test_corloc_over_the_cases_equals_the_reference():
    predictions, truths = zip(*(_arrays(case) for case in OFFICIAL["cases"]))
    value, hits = corloc(list(predictions), list(truths), OFFICIAL["threshold"])
    assert hits.tolist() == [case["hit"] for case in OFFICIAL["cases"]] and value == OFFICIAL["corloc"]


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
    eps = 1e-7  # added to both heights and to the union (LOST datasets.py bbox_iou)
    assert box_iou(np.array([0.0, 0.0, 10.0, 5.0]), truth)[0] == 50 / (10 * (5 + eps) + 10 * (10 + eps) - 50 + eps)
    assert box_iou(np.array([5.0, 5.0, 15.0, 15.0]), truth)[0] == pytest.approx(25 / 175)
    predictions = [np.array([0.0, 0.0, 10.0, 5.0]),  # exact IoU 0.5 with the first box: just below in float64
                   np.array([0, 0, 10, 5]),  # the same as integers (float32 arithmetic, eps lost): a hit
                   np.array([20.0, 20.0, 30.0, 30.01]),  # just above 0.5 with the second box
                   np.array([0.0, 0.0, 10.0, 4.9]),  # 0.49
                   np.array([50.0, 50.0, 60.0, 60.0])]
    value, hits = corloc(predictions, [truth, truth.astype(np.int64), truth, truth, truth])
    assert hits.tolist() == [False, True, True, False, False] and value == 40.0
    assert corloc([np.array([0.0, 0.0, 1.0, 1.0])], [np.zeros((0, 4))])[1].tolist() == [False]  # no true box
    assert to_pixels((6, 2, 9, 5), (8, 10), (100, 80)).tolist() == [60.0, 20.0, 90.0, 50.0]


def test_layouts_and_box_conventions(tmp_path):
    voc = write_synthetic_discovery(tmp_path / "voc", n_train=3)
    coco = write_synthetic_discovery(tmp_path / "coco", n_train=3, layout="coco20k")
    a, b = build_voc07({}, str(voc))["trainval"], build_coco20k({}, str(coco))["trainval"]
    np.testing.assert_allclose(np.concatenate(a.boxes), np.concatenate(b.boxes))  # same scenes, same boxes
    assert a.sizes == b.sizes == [(80, 64)] * 3
    annotations = coco / "annotations" / "instances_train2014.json"
    data = json.loads(annotations.read_text())
    data["annotations"][0]["bbox"] = [10.5, 11.5, 20.2, 5.5]  # corners 10.5, 11.5, 30.7, 17.0
    annotations.write_text(json.dumps(data))
    first = build_coco20k({}, str(coco))["trainval"]
    index = [Path(p).name for p in first.images].index(next(i["file_name"] for i in data["images"]
                                                            if i["id"] == data["annotations"][0]["image_id"]))
    # LOST's extract_gt_COCO: int(round(x)) of each corner, Python's round (half to even)
    assert [10.0, 12.0, 31.0, 17.0] in first.boxes[index].tolist()
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
