"""Hardening II: a COCO instances file is checked record by record before any compute - no silently wrong AP,
no traceback; zero-size boxes are skipped for training and evaluation alike, and counted."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dinobench.data.detection import build_coco
from dinobench.errors import DataError
from dinobench.metrics.detection import CocoMetric
from dinobench.synthetic.coco import write_synthetic_coco


@pytest.fixture
def coco_root(tmp_path):
    return write_synthetic_coco(tmp_path / "coco", n_train=3, n_val=4, size=(48, 64), seed=0)


def _val(coco_root):
    path = coco_root / "annotations" / "instances_val2017.json"
    return path, json.loads(path.read_text())


def _edit(path, payload):
    path.write_text(json.dumps(payload))


def _perfect_ap(val) -> float:
    """AP of detections equal to the training targets of every image (what a perfect detector outputs)."""
    metric = CocoMetric(val.coco, val.image_ids, val.label_to_category)
    for image_id in val.image_ids:
        boxes, labels = val.target(image_id)
        metric.update(image_id, boxes, torch.ones(len(boxes)), labels)
    return metric.compute()["AP"]


def test_zero_size_boxes_leave_training_and_evaluation_together(coco_root):
    path, data = _val(coco_root)
    data["annotations"][0]["bbox"][2] = 0.0
    data["annotations"][1]["bbox"][3] = 0.0
    _edit(path, data)
    val = build_coco({}, str(coco_root))["val"]
    assert val.describe()["skipped"]["degenerate_boxes"] == 2
    assert _perfect_ap(val) == pytest.approx(100.0)  # was 50-ish: the skipped boxes stayed in the ground truth


@pytest.mark.parametrize("change, message", [
    (lambda d: d["images"].append(dict(d["images"][0])), r"images\[4\] id \d+ is not a unique integer"),
    (lambda d: d["annotations"].append(dict(d["annotations"][0])), r"annotations\[\d+\] id \d+ is not a unique"),
    (lambda d: d["annotations"][0].update(bbox=[40.0, 2.0, 60.0, 10.0]), "reaches outside its 64x48 image"),
    (lambda d: d["annotations"][0].update(bbox=[1.0, 2.0, float("nan"), 3.0]), "is not four finite numbers"),
    (lambda d: d["categories"].append({"id": -3, "name": "neg"}), r"categories\[\d+\] id -3 is not a unique"),
    (lambda d: d["categories"].append({"id": 10**12, "name": "huge"}), "use dataset.label_mode=contiguous"),
    (lambda d: d["annotations"][0].pop("area"), "lacks area"),
    (lambda d: d["annotations"][0].pop("bbox"), "lacks bbox"),
    (lambda d: d["annotations"][0].pop("iscrowd"), "lacks iscrowd"),
    (lambda d: d["images"][0].pop("file_name"), "is not a file name"),
    (lambda d: d["annotations"][0].update(image_id="1"), "unknown image_id '1'"),
    (lambda d: d["images"][0].update(id=1.5), r"images\[0\] id 1.5 is not a unique integer"),
    (lambda d: d["images"][0].pop("width"), "has no positive width/height"),
])
def test_bad_records_are_one_line_before_any_compute(coco_root, change, message):
    path, data = _val(coco_root)
    change(data)
    _edit(path, data)
    with pytest.raises(DataError, match=message) as info:
        build_coco({}, str(coco_root))
    assert "\n" not in str(info.value) and str(info.value).startswith(str(path))


def test_a_huge_category_id_is_fine_with_contiguous_labels(coco_root):
    for split in ("train", "val"):
        path = coco_root / "annotations" / f"instances_{split}2017.json"
        data = json.loads(path.read_text())
        data["categories"].append({"id": 10**12, "name": "huge"})
        _edit(path, data)
    assert build_coco({"label_mode": "contiguous"}, str(coco_root))["val"].label_to_category[-1] == 10**12


_JSON = st.recursive(st.none() | st.booleans() | st.integers(-5, 10**13) | st.floats(allow_nan=True) | st.text(max_size=8),
                     lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children,
                                                                                       max_size=4), max_leaves=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(["id", "image_id", "category_id", "bbox", "area", "iscrowd"]), value=_JSON)
def test_any_value_in_an_annotation_is_accepted_or_one_line(coco_root, field, value):
    path, data = _val(coco_root)
    data["annotations"][0][field] = value
    _edit(path, data)
    try:
        build_coco({}, str(coco_root))
    except DataError as exc:
        assert "\n" not in str(exc)


@pytest.mark.parametrize("payload, message", [
    ({"images": ["a.jpg"], "annotations": [], "categories": []}, "'images' is a list holding non-objects"),
    ({"images": [], "annotations": {}, "categories": []}, "'annotations' is a dict, not a list of objects"),
    ({"images": [], "annotations": []}, "'categories' is missing"),
    ([1, 2], "not a COCO instances file"),
])
def test_the_top_level_shape_is_named_not_a_python_internal(coco_root, payload, message):
    path, _ = _val(coco_root)
    _edit(path, payload)
    with pytest.raises(DataError, match=message) as info:
        build_coco({}, str(coco_root))
    assert "string indices" not in str(info.value) and "\n" not in str(info.value)
