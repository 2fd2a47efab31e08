"""COCO-format detection data and metrics: the synthetic COCO set is read back exactly, bad input gives one line
or a counted skip, augmentations move boxes with the pixels, and our pycocotools conversion path scores ground
truth as AP 100 and anything else exactly as pycocotools does on the same json."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
import torch

from dinobench.data.detection import build_coco
from dinobench.data.detection_transforms import build_det_eval_transform, build_det_train_transform
from dinobench.data.joint import JointTransform
from dinobench.synthetic.coco import SYNTHETIC_COCO_CATEGORIES, write_synthetic_coco
from dinobench.metrics.detection import CocoMetric
from dinobench.errors import DataError

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


@pytest.fixture
def coco_root(tmp_path):
    return write_synthetic_coco(tmp_path / "coco", n_train=6, n_val=5)


def test_synthetic_coco_is_read_back_with_exact_boxes_and_id_mapping(coco_root):
    splits = build_coco({}, str(coco_root))
    train, val = splits["train"], splits["val"]
    assert len(train) == 6 and len(val) == 5 and train.category_ids == [2, 5, 9]
    assert train.num_classes == 10 and train.label_to_category[5] == 5  # category_id mode: label = id
    ann = json.loads((coco_root / "annotations" / "instances_train2017.json").read_text())
    first = [a for a in ann["annotations"] if a["image_id"] == 1000 and not a["iscrowd"]]
    sample = train[0]
    x, y, w, h = first[0]["bbox"]
    assert sample["boxes"][0].tolist() == [x, y, x + w, y + h] and sample["labels"][0] == first[0]["category_id"]
    assert train[2]["boxes"].shape == (0, 4)  # the image without objects is kept
    assert train.describe()["skipped"] == {"crowd": 1, "degenerate_boxes": 0}  # crowd left out of targets
    contiguous = build_coco({"label_mode": "contiguous"}, str(coco_root))["train"]
    assert contiguous.num_classes == 3 and contiguous.label_to_category == [2, 5, 9]
    assert contiguous[0]["labels"][0] == [2, 5, 9].index(first[0]["category_id"])
    # the pixels inside a box carry the category's texture: its mean colour differs from the background noise
    image = sample["image"]
    x0, y0, x1, y1 = (int(v) for v in sample["boxes"][0])
    assert image[:, y0:y1, x0:x1].std() != pytest.approx(float(image.std()), abs=1e-3)


def test_bad_input_is_one_line_or_a_counted_skip(coco_root, tmp_path):
    ann_path = coco_root / "annotations" / "instances_val2017.json"
    good = json.loads(ann_path.read_text())

    def fails(payload, match):
        ann_path.write_text(json.dumps(payload) if not isinstance(payload, str) else payload)
        with pytest.raises(DataError, match=match) as err:
            build_coco({}, str(coco_root))
        assert "\n" not in str(err.value)

    fails("{not json", "not valid UTF-8 JSON")
    fails({**good, "annotations": good["annotations"] + [{**good["annotations"][0], "id": 999, "category_id": 77}]},
          "unknown category_id 77")
    fails({**good, "images": good["images"] + [{"id": 5000, "file_name": "gone.jpg", "height": 4, "width": 4}]},
          r"1 of 6 images .* missing \(first: gone.jpg\)")
    ann_path.unlink()
    with pytest.raises(DataError, match="instances_val2017.json: annotation file missing"):
        build_coco({}, str(coco_root))
    degenerate = [{**a, "bbox": [a["bbox"][0], a["bbox"][1], 0, -3]} if i < 2 else a
                  for i, a in enumerate(good["annotations"])]
    ann_path.write_text(json.dumps({**good, "annotations": degenerate}))
    val = build_coco({}, str(coco_root))["val"]
    assert val.describe()["skipped"]["degenerate_boxes"] == 2
    assert sum(len(val[i]["boxes"]) for i in range(len(val))) == sum(
        1 for a in degenerate if not a["iscrowd"]) - 2
    with pytest.raises(DataError, match="--data-root"):
        build_coco({}, None)
    with pytest.raises(DataError, match="label_mode"):
        build_coco({"label_mode": "sorted"}, str(coco_root))


def test_augmentations_move_boxes_with_the_pixels(coco_root):
    train = build_coco({}, str(coco_root))["train"]
    sample = train[0]
    torch.manual_seed(0)
    flip = build_det_train_transform({"scales": [64], "max_size": 1000, "flip_prob": 1.0}, MEAN, STD)
    assert isinstance(flip, JointTransform)  # the one joint-transform system (image + BoundingBoxes)
    out = flip(dict(sample))
    _, h, w = sample["image"].shape
    assert out["size"] == (64, 96) and out["image"].shape == (3, 64, 96)
    expected = sample["boxes"].clone()
    expected[:, [0, 2]] = w - sample["boxes"][:, [2, 0]]
    torch.testing.assert_close(out["boxes"], expected)
    torch.testing.assert_close(out["image"], (sample["image"].flip(-1) - 0.5) / 0.25)
    double = build_det_train_transform({"scales": [128], "max_size": 1000, "flip_prob": 0.0}, MEAN, STD)(dict(sample))
    torch.testing.assert_close(double["boxes"], sample["boxes"] * 2)
    crop_cfg = {"scales": [64], "flip_prob": 0.0, "crop": {"resize": [64], "min_size": 30, "max_size": 40}}
    for seed in range(5):
        torch.manual_seed(seed)
        cropped = build_det_train_transform(crop_cfg, MEAN, STD)(dict(sample))
        boxes = cropped["boxes"]
        hh, ww = cropped["size"]
        assert len(boxes) == len(cropped["labels"]) <= len(sample["boxes"])
        assert bool((boxes[:, 2:] > boxes[:, :2]).all())
        assert bool((boxes[:, 2] <= ww).all()) and bool((boxes[:, 3] <= hh).all()) and bool((boxes >= 0).all())
    evaluated = build_det_eval_transform({"scale": 32, "max_size": 40}, MEAN, STD)(dict(sample))
    assert evaluated["size"] == (26, 40) and evaluated["orig_size"] == (64, 96)  # long side capped at 40


def _pycocotools_direct(gt, detections):
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(gt, gt.loadRes(detections), iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats


@pytest.mark.parametrize("mode", ["category_id", "contiguous"])
def test_ground_truth_scores_ap_100_and_shifted_boxes_equal_pycocotools(coco_root, mode):
    val = build_coco({"label_mode": mode}, str(coco_root))["val"]
    metric = CocoMetric(val.coco, val.image_ids, val.label_to_category)
    for i in range(len(val)):
        sample = val[i]
        metric.update(sample["image_id"], sample["boxes"], torch.ones(len(sample["boxes"])), sample["labels"])
    metrics = metric.compute()
    assert metrics["AP"] == 100.0 and metrics["AP50"] == 100.0 and metrics["AR100"] == 100.0
    assert metric.per_category_ap() == {name: 100.0 for _, name, _ in SYNTHETIC_COCO_CATEGORIES}
    # shifted and rescored boxes: our numbers are exactly pycocotools' on the same detections written by hand
    rng = np.random.default_rng(0)
    shifted, direct = CocoMetric(val.coco, val.image_ids, val.label_to_category), []
    for i in range(len(val)):
        sample = val[i]
        boxes = sample["boxes"] + torch.from_numpy(rng.uniform(-4, 4, size=(len(sample["boxes"]), 4))).float()
        scores = torch.from_numpy(rng.uniform(0.1, 1.0, size=len(boxes))).float()
        shifted.update(sample["image_id"], boxes, scores, sample["labels"])
        for box, score, label in zip(boxes.tolist(), scores.tolist(), sample["labels"].tolist()):
            category = label if mode == "category_id" else [c for c, _, _ in SYNTHETIC_COCO_CATEGORIES][label]
            direct.append({"image_id": sample["image_id"], "category_id": category, "score": score,
                           "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]]})
    ours = shifted.compute()
    stats = _pycocotools_direct(val.coco, direct)
    assert [ours[k] for k in ("AP", "AP50", "AP75", "APs", "AR1", "AR10", "AR100")] == [
        round(float(s) * 100, 2) for s in stats[[0, 1, 2, 3, 6, 7, 8]]]
    assert np.isnan(ours["APl"]) and stats[5] == -1  # no large objects: pycocotools' -1 is recorded as NaN
    assert 0 < ours["AP"] < 100


def test_metric_merges_rank_states_and_handles_no_detections(coco_root):
    val = build_coco({}, str(coco_root))["val"]
    parts = [CocoMetric(val.coco, val.image_ids, val.label_to_category) for _ in range(2)]
    for i in range(len(val)):
        sample = val[i]
        parts[i % 2].update(sample["image_id"], sample["boxes"], torch.ones(len(sample["boxes"])), sample["labels"])
    merged = CocoMetric(val.coco, val.image_ids, val.label_to_category)
    merged.merge([p.state() for p in parts])
    assert merged.compute()["AP"] == 100.0
    assert CocoMetric(val.coco, val.image_ids, val.label_to_category).compute()["AP"] == 0.0
