"""create_backbone(weights=<run>/checkpoints/checkpoint_*.pth): the EMA teacher of a dinobench
SSL training checkpoint, and which sub-model wins in other multi-model state dicts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import dinobench
from dinobench.backbones.loading import unwrap_state_dict
from dinobench.errors import WeightsError
from conftest import REPO

TINY = {"embed_dim": 64, "depth": 2, "num_heads": 2}
#: 4 iterations of 8 images, checkpoints after iterations 1 and 3 (the last)
FAST = [*(f"student.overrides.{k}={v}" for k, v in TINY.items()), "crops.global_crops_size=32",
        "crops.local_crops_size=16", "crops.local_crops_number=2", "dino.head_n_prototypes=64",
        "ibot.head_n_prototypes=64", "dino.head_hidden_dim=64", "ibot.head_hidden_dim=64",
        "dino.head_bottleneck_dim=32", "ibot.head_bottleneck_dim=32", "train.batch_size_per_gpu=8",
        "train.epoch_length=2", "optim.epochs=2", "optim.warmup_epochs=1", "teacher.warmup_teacher_temp_epochs=1",
        "teacher.teacher_temp=0.07", "checkpointing.period=2"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    from dinobench.training.launch import resolve_train_config
    from dinobench.training.ssl import train

    out = tmp_path_factory.mktemp("ssl") / "run"
    torch.manual_seed(0)
    train(resolve_train_config(REPO / "configs" / "train" / "vit_tiny_digits_pretrain.py", FAST), out)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["checkpoint_00000001.pth",
                                                                       "checkpoint_00000003.pth"]
    return out


def _features(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    torch.manual_seed(3)
    out = model.forward_features(torch.randn(2, 3, 32, 32))
    return {k: v for k, v in out.items() if isinstance(v, torch.Tensor)}


def test_final_training_checkpoint_loads_as_the_exported_teacher(run, caplog):
    with caplog.at_level("INFO", logger="dinobench"):
        model = dinobench.create_backbone("vit_tiny", weights=run / "checkpoints" / "checkpoint_00000003.pth", **TINY)
    assert "loaded the EMA teacher 'emas.student.backbone' from checkpoint_00000003.pth" in caplog.text
    exported = dinobench.create_backbone("vit_tiny", weights=run / "teacher_checkpoint.pth", **TINY)
    got, want = _features(model), _features(exported)
    assert got.keys() == want.keys()
    for key in want:
        assert torch.equal(got[key], want[key]), key


def test_earlier_checkpoint_is_its_ema_teacher_not_the_student(run):
    path = run / "checkpoints" / "checkpoint_00000001.pth"
    # weights_only=True reads the whole checkpoint: optimizer state, RNG states and config included
    saved = torch.load(path, map_location="cpu", weights_only=True)
    assert {"iteration", "model", "optimizer", "rng", "config"} <= set(saved)
    assert saved["optimizer"]["state"] and isinstance(saved["rng"]["torch"], torch.Tensor)
    model = dinobench.create_backbone("vit_tiny", weights=path, **TINY)
    loaded = model.state_dict()
    ema = {k[len("emas.student.backbone."):]: v for k, v in saved["model"].items()
           if k.startswith("emas.student.backbone.")}
    assert loaded.keys() == ema.keys()
    for key, value in ema.items():
        assert torch.equal(loaded[key], value), key
    student = saved["model"]["students.student.backbone.blocks.0.attn.qkv.weight"]
    assert not torch.equal(loaded["blocks.0.attn.qkv.weight"], student)


def _sub_models(*prefixes: str) -> dict[str, torch.Tensor]:
    state = {f"{p}backbone.w": torch.full((1,), float(i)) for i, p in enumerate(prefixes)}
    return {**state, "dino_loss.center": torch.zeros(1), "gram_teacher.w": torch.zeros(1)}


@pytest.mark.parametrize(("prefixes", "taken"), [
    (("students.student.", "emas.student."), "emas.student."),
    (("students.a.", "students.student.", "emas.a.", "emas.student."), "emas.student."),
    (("student.", "teacher."), "teacher."),  # official DINOv2 training checkpoint layout
    (("student.", "model_ema."), "model_ema."),
    (("student.",), "student."),
])
def test_the_teacher_is_preferred(prefixes, taken):
    state = unwrap_state_dict({"iteration": 3, "model": _sub_models(*prefixes), "rng": {"python_gauss": None}})
    assert state == {"w": torch.full((1,), float(prefixes.index(taken)))}


def test_several_ema_teachers_without_a_student_named_student_raise_naming_them():
    with pytest.raises(WeightsError, match=r"ckpt.pth: .*'emas.small.backbone', 'emas.base.backbone'"):
        unwrap_state_dict({"model": _sub_models("students.small.", "students.base.", "emas.small.", "emas.base.")},
                          "ckpt.pth")
