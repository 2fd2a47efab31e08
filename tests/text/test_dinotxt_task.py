"""dino.txt end to end, offline: `dinobench train` aligns a tiny text tower to a tiny backbone on real digits with
class-name captions, exports the head in the released layout, and `digits-zeroshot` scores it far above chance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dinobench.errors import ConfigError
from dinobench.protocols.zeroshot import ZeroShotProtocol
from dinobench.text.inference import openai_imagenet_classnames, openai_imagenet_templates
from dinobench.utils.paths import configs_dir
from helpers import smoke_options

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


def _train_cmd(output: Path, *extra: str, ranks: int = 1) -> list[str]:
    import sys

    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks)] if ranks > 1 else []
    return [sys.executable, *launcher, "-m", "dinobench", "train", "--config", str(CONFIG), "--output", str(output),
            "train.max_iters=6", "train.batch_size=8", "train.checkpoint_every=3", "train.max_to_keep=2",
            "train.log_every=1", "model.vision_head_drop_path=0.0", *extra]  # drop path draws differ per rank


@pytest.mark.slow
def test_two_rank_fsdp2_equals_single_process_and_resumes_exactly(tmp_path):
    """FSDP2 (text and vision-head blocks sharded, then the model) on CPU with gloo: the same exported head as one
    process after 6 updates (reduction order differs: tolerance); a run resumed from the mid checkpoint ends
    bit-equal."""
    import os
    import subprocess

    env = {**os.environ, "TQDM_DISABLE": "1", "DINOBENCH_DIST_BACKEND": "gloo", "OMP_NUM_THREADS": "1"}
    single = subprocess.run(_train_cmd(tmp_path / "single"), env=env, capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    fsdp = subprocess.run(_train_cmd(tmp_path / "fsdp", "train.parallel=fsdp", ranks=2), env=env,
                          capture_output=True, text=True, timeout=600)
    assert fsdp.returncode == 0, fsdp.stderr[-3000:]

    # (the logged loss is rank 0's share of the batch; the weights are what must agree)
    one = torch.load(tmp_path / "single" / "dinotxt_head.pth", weights_only=True)
    two = torch.load(tmp_path / "fsdp" / "dinotxt_head.pth", weights_only=True)
    assert set(one) == set(two) and all(type(v) is torch.Tensor for v in two.values())
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=1e-3, atol=1e-5, msg=key)
    resumed = tmp_path / "resumed"
    (resumed / "run" / "checkpoints").mkdir(parents=True)
    (resumed / "run" / "checkpoints" / "checkpoint_00000002.pth").write_bytes(
        (tmp_path / "fsdp" / "run" / "checkpoints" / "checkpoint_00000002.pth").read_bytes())
    again = subprocess.run(_train_cmd(resumed, "train.parallel=fsdp", ranks=2), env=env, capture_output=True,
                           text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resumed after iteration 2" in again.stderr
    final = torch.load(resumed / "dinotxt_head.pth", weights_only=True)
    assert all(torch.equal(final[k], two[k]) for k in two)
