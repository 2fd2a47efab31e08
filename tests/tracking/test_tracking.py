"""DAVIS-2017 tracking: J and F against a direct float64 transcription of the DAVIS definitions (pixel loops:
boundary map, disk dilation as distances, precision/recall cases) on hand-made masks - empty masks, one-pixel
objects, several objects, void pixels -, mean/recall/decay against the benchmark's binning, sequence and dataset
scores against the official davis2017-evaluation (tests/fixtures/davis_official.json, scripts/davis_golden.py: void
counts as background), label propagation on identical frames reproducing the first mask, and the task end to end
on moving synthetic shapes (far above copying the first mask)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from dinobench.data.davis import build_davis2017, load_ids
from dinobench.synthetic.video import write_synthetic_davis
from dinobench.errors import DataError
from dinobench.protocols.tracking import FrameTransform, TrackingProtocol, neighborhood_mask, propagate
from dinobench.metrics.tracking import (boundary_f, davis_summary, region_similarity, seg2bmap, sequence_scores,
                                        statistics)
from conftest import FIXTURES
from helpers import run_task


def ref_j(truth, pred, void):
    inter = union = 0
    for y in range(truth.shape[0]):
        for x in range(truth.shape[1]):
            if void[y, x]:
                continue
            inter += bool(truth[y, x] and pred[y, x])
            union += bool(truth[y, x] or pred[y, x])
    return 1.0 if union == 0 else inter / union


def ref_bmap(seg):
    h, w = seg.shape
    out = np.zeros((h, w), dtype=bool)
    for y in range(h):
        for x in range(w):
            right = seg[y, x + 1] if x + 1 < w else False
            below = seg[y + 1, x] if y + 1 < h else False
            diag = seg[y + 1, x + 1] if (x + 1 < w and y + 1 < h) else False
            if y == h - 1 and x == w - 1:
                out[y, x] = False
            elif y == h - 1:
                out[y, x] = seg[y, x] != right
            elif x == w - 1:
                out[y, x] = seg[y, x] != below
            else:
                out[y, x] = seg[y, x] != right or seg[y, x] != below or seg[y, x] != diag
    return out


def ref_f(truth, pred, void, bound_th=0.008):
    r = bound_th if bound_th >= 1 else math.ceil(bound_th * math.sqrt(truth.shape[0] ** 2 + truth.shape[1] ** 2))
    pb, tb = ref_bmap(pred & ~void), ref_bmap(truth & ~void)

    def covered(point, boundary):
        ys, xs = np.nonzero(boundary)
        return any((y - point[0]) ** 2 + (x - point[1]) ** 2 <= r * r for y, x in zip(ys, xs))

    n_p, n_t = pb.sum(), tb.sum()
    if n_p == 0 and n_t == 0:
        p = rec = 1.0
    elif n_p == 0:
        p, rec = 1.0, 0.0
    elif n_t == 0:
        p, rec = 0.0, 1.0
    else:
        p = sum(covered(pt, tb) for pt in zip(*np.nonzero(pb))) / n_p
        rec = sum(covered(pt, pb) for pt in zip(*np.nonzero(tb))) / n_t
    return 0.0 if p + rec == 0 else 2 * p * rec / (p + rec)


def hand_made_cases():
    h, w = 24, 31
    empty = np.zeros((h, w), dtype=bool)
    one = empty.copy()
    one[5, 7] = True
    box = empty.copy()
    box[4:15, 6:20] = True
    shifted = np.roll(box, (2, 3), axis=(0, 1))
    edge = empty.copy()
    edge[-3:, -5:] = True  # touches the last row and column
    void = empty.copy()
    void[:, :4] = True
    return [(empty, empty, empty), (empty, one, empty), (one, empty, empty), (one, one, empty), (box, shifted, empty),
            (box, shifted, void), (edge, box, empty), (box, box | one, empty), (edge, edge, void)]


@pytest.mark.parametrize("case", range(9))
def test_j_and_f_equal_the_davis_definitions(case):
    truth, pred, void = hand_made_cases()[case]
    assert region_similarity(truth, pred, void) == pytest.approx(ref_j(truth, pred, void), abs=1e-12)
    assert boundary_f(truth, pred, void) == pytest.approx(ref_f(truth, pred, void), abs=1e-12)
    assert boundary_f(truth, pred, void, bound_th=2) == pytest.approx(ref_f(truth, pred, void, 2), abs=1e-12)
    np.testing.assert_array_equal(seg2bmap(pred), ref_bmap(pred))


def test_statistics_and_several_objects():
    values = np.array([0.9, 0.8, 0.7, 0.6, 0.4, 0.3, 0.2, 0.1, 0.05])
    ids = (np.round(np.linspace(1, 9, 5) + 1e-10) - 1).astype(int)  # the benchmark's bins: [0..2], ..., [6..8]
    mean, recall, decay = statistics(values)
    assert mean == pytest.approx(values.mean()) and recall == pytest.approx(4 / 9)
    assert decay == pytest.approx(values[ids[0]:ids[1] + 1].mean() - values[ids[3]:ids[4] + 1].mean())
    truth = np.zeros((5, 12, 12), dtype=np.uint8)
    truth[:, 2:5, 2:5], truth[:, 7:10, 6:11] = 1, 2
    truth[2, 0, 0] = 255  # a void pixel
    pred = truth.copy()
    pred[2:, 7:10, 6:11] = 0  # object 2 lost from frame 2 on
    scores = sequence_scores(truth, pred)
    assert scores["J"].shape == (2, 3)  # objects x frames 1..3 (first and last left out)
    np.testing.assert_allclose(scores["J"], [[1, 1, 1], [1, 0, 0]])
    metrics, rows = davis_summary({"seq": scores})
    assert metrics["J_mean"] == pytest.approx(100 * (1 + 1 / 3) / 2)
    assert metrics["J&F"] == pytest.approx((metrics["J_mean"] + metrics["F_mean"]) / 2)
    assert [r["object"] for r in rows] == [1, 2]


def _golden_differences(exclude_void):
    """Largest |dinobench - official| over the fixture's per-object and dataset statistics (fractions), and J&F."""
    golden = json.loads((FIXTURES / "davis_official.json").read_text())
    scores = {name: sequence_scores(np.asarray(seq["truth"], dtype=np.uint8),
                                    np.asarray(seq["prediction"], dtype=np.uint8), exclude_void=exclude_void)
              for name, seq in golden["sequences"].items()}
    metrics, rows = davis_summary(scores)
    assert [f"{r['sequence']}_{r['object']}" for r in rows] == list(golden["per_object"])
    diffs = [abs(row[key] / 100 - value) for row in rows
             for key, value in golden["per_object"][f"{row['sequence']}_{row['object']}"].items()]
    diffs += [abs(metrics[key] / 100 - value) for key, value in golden["global"].items()]
    return max(diffs), metrics["J&F"]


def test_scores_equal_the_official_davis_evaluation_where_void_is_background():
    golden = json.loads((FIXTURES / "davis_official.json").read_text())
    truth = np.asarray(golden["sequences"]["golden-a"]["truth"])
    prediction = np.asarray(golden["sequences"]["golden-a"]["prediction"])
    assert (truth == 255).any() and (prediction[truth == 255] > 0).any()  # the fixture predicts on void pixels
    worst, official = _golden_differences(exclude_void=False)
    assert worst < 1e-9 and official == pytest.approx(100 * golden["global"]["J&F"], abs=1e-9)
    worst, excluded = _golden_differences(exclude_void=True)  # void left out: not the official numbers
    assert worst > 0.05 and excluded > official + 5
    print(json.dumps({"J&F official": official, "J&F exclude_void": excluded}))


def test_propagation_on_identical_frames_reproduces_the_first_mask():
    torch.manual_seed(0)
    h, w, d = 6, 8, 16
    frame = torch.nn.functional.normalize(torch.randn(h, w, d), dim=-1)
    features = frame.expand(4, h, w, d).clone()
    first = np.zeros((12, 16), dtype=np.uint8)
    first[2:6, 4:10], first[8:12, 0:4] = 1, 2
    protocol = TrackingProtocol({"radius": 3.0, "topk": 1})
    prediction = protocol.track(features, first, first.shape)
    for t in range(4):  # one-hot at patch resolution (2 x 2 pixels each), nearest upsampling: exact
        np.testing.assert_array_equal(prediction[t], first)
    assert neighborhood_mask(9, 9, 3.0, "circle").sum(1).max() == 29  # points of a radius-3 disk (centre patch)
    probs = propagate(frame, frame[None], torch.nn.functional.one_hot(torch.zeros(1, h, w, dtype=torch.long), 2).float(),
                      neighborhood_mask(h, w, 3.0, "circle"), 5, 0.2, chunk=7)
    torch.testing.assert_close(probs.sum(-1), torch.ones(h, w))


def test_frame_transform_rounds_up_to_whole_patches_like_the_notebook():
    transform = FrameTransform(960, 16, (0, 0, 0), (1, 1, 1))
    assert transform.size(854, 480) == (960, 1712)  # ceil(854 * 960 / 480 / 16) * 16
    assert transform.size(480, 854) == (1712, 960)


def test_davis2017_tracking_end_to_end(run_cli, tmp_path):
    root = write_synthetic_davis(tmp_path / "davis")
    record, path = run_task(run_cli, "davis2017-tracking", root, tmp_path / "out", extra=("--save-predictions",))
    metrics = record["metrics"]
    assert record["protocol"] == "tracking" and record["main_metric"]["name"] == "J&F"
    assert len(record["tables"]["per_object"]) == 4 and record["higher_is_better"]["J_decay"] is False
    # the smoke run's smaller frames and radius are named against the notebook's recipe (backbone size is the row)
    assert record["recipe"] == {"official": "notebooks/segmentation_tracking.ipynb", "equal": False,
                                "differs": ["protocol.radius", "transform.short_side"]}
    copy = {}
    for sequence in build_davis2017({}, str(root))["val"].sequences:
        truth = np.stack([load_ids(p) for p in sequence.annotations])
        copy[sequence.name] = sequence_scores(truth, np.repeat(truth[:1], len(truth), axis=0))
    copied = davis_summary(copy)[0]["J&F"]
    assert metrics["J&F"] > copied + 30, (metrics, copied)
    assert (path.parent / "predictions" / "tracking_synthetic-00.png").is_file()
    again, _ = run_task(run_cli, "davis2017-tracking", root, tmp_path / "out")
    assert again["metrics"] == metrics  # frame features from the cache, same numbers
    (root / "Annotations" / "480p" / "synthetic-01" / "00003.png").unlink()
    with pytest.raises(DataError, match="1 of 10 frames have no annotation"):
        build_davis2017({}, str(root))
    print(json.dumps({"J&F": metrics["J&F"], "copy_first_mask": copied}))
