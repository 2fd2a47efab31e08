"""The classification transforms equal the official ``make_classification_eval_transform`` /
``make_classification_train_transform`` on the same image (tests/fixtures/classification_transform_official.json,
scripts/classification_transform_golden.py): kNN / linear 256 -> 224, logreg 224 / 224, the dino.txt zero-shot
512 / 512, and one seeded train draw."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from conftest import FIXTURES, REPO
from dinobench.data.transforms import build_eval_transform, build_train_transform
from dinobench.resolve import resolve_task

GOLDEN = json.loads((FIXTURES / "classification_transform_official.json").read_text())
_spec = importlib.util.spec_from_file_location("golden", REPO / "scripts" / "classification_transform_golden.py")
golden = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(golden)
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def _compare(out: torch.Tensor, want: dict) -> None:
    assert list(out.shape) == want["shape"]
    rows, cols = golden.sample_grid(out.shape[-2:])
    sample = out[:, rows][:, :, cols].flatten()
    # the same uint8 resize and float ops: equal up to float32 rounding of the normalisation
    torch.testing.assert_close(sample, torch.tensor(want["sample"]), rtol=0, atol=1e-6)
    assert float(out.double().sum()) == pytest.approx(want["sum"], abs=1e-2)


@pytest.mark.parametrize("sizes", sorted(GOLDEN["eval"]))
def test_eval_transform_equals_the_official(sizes):
    resize, crop = (int(v) for v in sizes.split("/"))
    out = build_eval_transform({"resize": resize, "crop": crop, "interpolation": "bicubic"}, *IMAGENET)(golden.image())
    _compare(out, GOLDEN["eval"][sizes])


def test_train_augmentation_equals_the_official_draw_for_draw():
    transform = build_train_transform({"resize": 256, "crop": 224, "interpolation": "bicubic"}, *IMAGENET)
    torch.manual_seed(0)
    _compare(transform(golden.image()), GOLDEN["train_seed0"])


def test_the_zero_shot_task_uses_the_notebooks_512():
    transform = resolve_task("imagenet-zeroshot", None)["transform"]
    assert (transform["resize"], transform["crop"], transform["interpolation"]) == (512, 512, "bicubic")
