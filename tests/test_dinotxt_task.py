"""dino.txt end to end, offline: `dinobench train` aligns a tiny text tower to a tiny backbone on real digits with
class-name captions, exports the head in the released layout, and `digits-zeroshot` scores it far above chance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dinobench.errors import ConfigError
from dinobench.protocols.zeroshot import ZeroShotProtocol, openai_imagenet_classnames, openai_imagenet_templates
from dinobench.utils.paths import configs_dir
from test_dense_tasks import smoke_options

CONFIG = configs_dir() / "train" / "dinotxt_vit_tiny_digits.py"


def _zero_shot(run_cli, out, *options):
    code, _, err = run_cli("run", "--backbone", "vit_tiny", "--task", "digits-zeroshot", "--output", str(out),
                           "--cfg-options", *smoke_options("digits-zeroshot"), *options)
    return code, err


def test_demo_trains_exports_and_zero_shot_is_far_above_chance(run_cli, tmp_path):
    out = tmp_path / "dinotxt"
    code, stdout, err = run_cli("train", "--config", str(CONFIG), "--output", str(out))
    assert code == 0, err
    head = out / "dinotxt_head.pth"
    state = torch.load(head, weights_only=True)
    assert "logit_scale" in state and "text_model.head.linear_projection.weight" in state
    assert not any(k.startswith("visual_model.backbone.") for k in state)  # the released file's layout
    lines = [json.loads(x) for x in (out / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [x["loss"] for x in lines if "loss" in x]
    assert losses[-1] < losses[0] - 0.5
    code, err = _zero_shot(run_cli, tmp_path / "eval", f"protocol.head_weights={head}")
    assert code == 0, err
    (path,) = Path(tmp_path / "eval").glob("vit_tiny/digits-zeroshot/*/result.json")
    record = json.loads(path.read_text())
    print(f"\ndino.txt digits demo: zero-shot {record['metrics']}")
    assert record["metrics"]["top1"] > 50  # chance: 10 (measured 76.9)
    assert record["input_files"]["protocol.head_weights"]["path"] == str(head.resolve())
    assert record["timings"]["text_embeddings_cached"] == 0.0
    # a second run reads the class embeddings from the text-embedding cache and gives the same numbers
    code, err = _zero_shot(run_cli, tmp_path / "again", f"protocol.head_weights={head}")
    assert code == 0, err
    (again,) = Path(tmp_path / "again").glob("vit_tiny/digits-zeroshot/*/result.json")
    again = json.loads(again.read_text())
    assert again["timings"]["text_embeddings_cached"] == 1.0 and again["metrics"] == record["metrics"]


def test_zero_shot_needs_a_head_and_valid_templates(run_cli, tmp_path):
    code, err = _zero_shot(run_cli, tmp_path, "protocol.head_weights=None")
    assert code != 0 and "protocol.head_weights: zero-shot needs a dino.txt checkpoint" in err
    assert len(err.strip().splitlines()) == 1
    weights = tmp_path / "head.pth"
    torch.save({"logit_scale": torch.zeros(1)}, weights)
    code, err = _zero_shot(run_cli, tmp_path, f"protocol.head_weights={weights}")
    assert code != 0 and len(err.strip().splitlines()) == 1 and "weights do not fit this head" in err
    with pytest.raises(ConfigError, match="a list of strings with {}"):
        ZeroShotProtocol({"templates": ["no slot"]}).templates()


def test_openai_templates_and_imagenet_class_names_come_from_open_clip():
    names = openai_imagenet_classnames()
    assert len(names) == 1000 and names[:2] == ["tench", "goldfish"]
    prompts = openai_imagenet_templates()
    assert len(prompts) == 80 and prompts[0] == "a bad photo of a {}." and all("{}" in p for p in prompts)
