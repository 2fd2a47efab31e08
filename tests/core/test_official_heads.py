"""Released heads: the official linear layouts against the official code (golden fixture from
scripts/linear_heads_golden.py), strict loading with one-line errors, the hub table (``dinobench list heads``,
``dinobench run --head``) and ``dinobench export`` round trips."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from dinobench.errors import WeightsError
from dinobench.features.kinds import cls4_avgpool
from dinobench.heads.linear_classifier import official_classifier_name, read_linear_classifier
from dinobench.heads.linear_seg import LinearSegHead
from dinobench.heads.weights import load_head_state, read_head_state
from dinobench.plugin_manager import get_registries
from dinobench.protocols.linear import linear_input_columns
from dinobench.resolve import resolve_task
from dinobench.testing import deterministic_fill, key_shapes
from conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
import linear_heads_golden as golden  # noqa: E402

FIXTURE = torch.load(REPO / "tests" / "fixtures" / "linear_heads_official.pt", weights_only=True)
TINY = ["backbone.embed_dim=64", "backbone.depth=4", "backbone.num_heads=2"]


def official_grid() -> nn.Module:
    """A module with the official ``AllClassifiers`` key names, filled as the fixture's grid."""
    grid = nn.Module()
    grid.classifiers_dict = nn.ModuleDict()
    for key, shape in FIXTURE["grid"]["keys"].items():
        name = key.split(".")[1]
        if name not in grid.classifiers_dict and key.endswith("weight"):
            holder = nn.Module()
            holder.linear = nn.Linear(shape[1], shape[0])
            grid.classifiers_dict[name] = holder
    return deterministic_fill(grid, golden.SALT + ":grid")


def test_official_grid_names_are_what_dinobench_writes():
    names = sorted({k.split(".")[1] for k in FIXTURE["grid"]["keys"]})
    assert names == sorted(official_classifier_name(n, lr) for n, lr in golden.GRID)


@pytest.mark.parametrize("name", sorted({k.split(".")[1] for k in FIXTURE["grid"]["keys"]}))
def test_classifier_from_an_official_linear_checkpoint_equals_the_official_logits(tmp_path, name):
    grid = official_grid()
    assert key_shapes(grid) == FIXTURE["grid"]["keys"]
    ddp = {f"module.{k}": v for k, v in grid.state_dict().items()}  # saved under DDP
    torch.save({"iteration": 9, "linear_classifiers": ddp, "best_accuracy": 1.0}, tmp_path / "checkpoint.pth")
    n_blocks, head, picked = read_linear_classifier(tmp_path / "checkpoint.pth", 64, name)
    assert picked == name and n_blocks == int(name.split("_")[1])
    backbone = golden.tiny_backbone()
    with torch.no_grad():
        features = cls4_avgpool(backbone, golden.inputs())
        logits = head(features[:, linear_input_columns(features.shape[1], 64, n_blocks)])
    diff = float((logits - FIXTURE["grid"]["logits"][name]).abs().max())
    # float32; measured on an AMD EPYC (CPU-independent inputs and weights): 0 with its own kernels and on one
    # thread, 6.0e-7 with ATEN_CPU_CAPABILITY=default (logits up to 1.8): 1e-4 is 170x that
    assert diff < 1e-4, f"{name}: max abs diff {diff:.3g}"


def test_hub_classifier_layout_and_grid_errors(tmp_path):
    grid = official_grid().state_dict()
    name = official_classifier_name(1, 0.001)
    hub = {"weight": grid[f"classifiers_dict.{name}.linear.weight"], "bias": grid[f"classifiers_dict.{name}.linear.bias"]}
    torch.save(hub, tmp_path / "lc.pth")  # the dinov3_vit7b16_lc file layout: {weight, bias} on [CLS, mean patch]
    n_blocks, head, _ = read_linear_classifier(tmp_path / "lc.pth", 64)
    assert n_blocks == 1 and head.in_features == 128
    torch.save({"linear_classifiers": grid}, tmp_path / "grid.pth")
    with pytest.raises(WeightsError, match=r"holds 2 classifiers .* protocol.classifier=NAME") as info:
        read_linear_classifier(tmp_path / "grid.pth", 64)
    assert "\n" not in str(info.value)
    with pytest.raises(WeightsError, match="did you mean classifier_1_blocks_avgpool_True_lr_0_00100"):
        read_linear_classifier(tmp_path / "grid.pth", 64, "classifier_1_blocks_avgpool_True_lr_0_00101")
    with pytest.raises(WeightsError, match="does not fit this backbone"):
        read_linear_classifier(tmp_path / "lc.pth", 48)
    torch.save({"head.weight": hub["weight"]}, tmp_path / "other.pth")
    with pytest.raises(WeightsError, match="not a linear classifier"):
        read_linear_classifier(tmp_path / "other.pth", 64)


def test_segmentation_head_from_model_final_equals_the_official_linear_head(tmp_path):
    ours = deterministic_fill(LinearSegHead([64], golden.NUM_CLASSES), golden.SALT + ":seg").eval()
    official_state = {f"segmentation_model.1.{k}": v for k, v in ours.state_dict().items()}
    assert key_shapes(ours) == {k.removeprefix("segmentation_model.1."): v for k, v in FIXTURE["seg"]["keys"].items()}
    torch.save({"model": official_state, "optimizer": {}}, tmp_path / "model_final.pth")  # the official train.py file
    fresh = LinearSegHead([64], golden.NUM_CLASSES).eval()
    load_head_state(fresh, read_head_state(tmp_path / "model_final.pth", ("segmentation_model.1.",)))
    backbone = golden.tiny_backbone()
    with torch.no_grad():
        layers = backbone.get_intermediate_layers(golden.inputs(), n=[3], reshape=True, return_class_token=True)
        logits = fresh(list(layers), size=golden.IMAGE_SIZE)
    diff = float((logits - FIXTURE["seg"]["logits"]).abs().max())
    assert diff < 1e-4, f"max abs diff {diff:.3g}"
    bad = dict(official_state)
    bad.pop("segmentation_model.1.conv.bias")
    bad["segmentation_model.1.batchnorm.weight"] = torch.ones(64)  # an old dinobench name
    with pytest.raises(WeightsError, match=r"missing keys \(first: conv.bias\).*unexpected keys "
                                           r"\(first: batchnorm.weight\)") as info:
        load_head_state(fresh, read_head_state_from(bad, tmp_path))
    assert "\n" not in str(info.value)


def read_head_state_from(state: dict, tmp_path: Path) -> dict:
    torch.save({"model": state}, tmp_path / "bad.pth")
    return read_head_state(tmp_path / "bad.pth", ("segmentation_model.1.",))


@pytest.mark.parametrize("spec", list(get_registries().heads), ids=lambda s: s.name)
def test_every_hub_head_names_a_backbone_and_tasks_whose_config_takes_its_options(spec):
    assert spec.backbone in get_registries().backbones
    for task in spec.tasks:
        cfg = resolve_task(task, {**spec.options, spec.weights_key: "head.pth"})
        assert cfg["protocol"]["head_weights"] == "head.pth"


def test_list_heads_shows_the_hub_table(run_cli):
    code, out, _ = run_cli("list", "heads", "--json")
    rows = {row["name"]: row for row in json.loads(out)}
    assert code == 0 and {"dinov3_vit7b16_lc", "dinov3_vit7b16_dd", "dinov3_vitl16_chmv2", "dinov3_vit7b16_ms",
                          "dinov3_vit7b16_de", "dinov3_vitl16_dinotxt_tet1280d20h24l"} <= set(rows)
    assert rows["dinov3_vitl16_chmv2"]["backbone"] == "vitl16_sat493m"
    assert "bins_strategy=chmv2_mixlog" in rows["dinov3_vitl16_chmv2"]["config"]
    code, _, err = run_cli("run", "--head", "dinov3_vitl16_chmv3", "--head-weights", "x.pth")
    assert code == 2 and "did you mean 'dinov3_vitl16_chmv2'" in err and len(err.strip().splitlines()) == 1


SMALL_CHM = ["protocol.head.layers=[0,1,2,3]", "protocol.head.channels=16", "protocol.head.post_process_channels=[8,16,16,16]",
             "protocol.head.n_hidden_channels=8", "protocol.head.n_bins=32"]


def chm_decoder_state() -> dict:
    """Random weights in the released CHMv2 decoder's key layout, at the test's small sizes."""
    from dinobench.heads import build_depther

    model = build_depther(golden.tiny_backbone(), type="dpt", backbone_out_layers=[0, 1, 2, 3], use_batchnorm=False,
                          use_cls_token=True, n_output_channels=32, min_depth=0.001, max_depth=96.0,
                          bins_strategy="chmv2_mixlog", norm_strategy="chmv2_mixlog",
                          head_kwargs=dict(channels=16, post_process_channels=[8, 16, 16, 16], n_hidden_channels=8,
                                           use_bias=True, projection_after_fusion=False))
    return deterministic_fill(model.decoder, "chm-test").state_dict()


def test_run_with_a_released_head_evaluates_without_training_and_names_the_head(run_cli, tmp_path):
    from dinobench.synthetic.canopy import write_synthetic_canopy

    data = write_synthetic_canopy(tmp_path / "chm", n_train=2, n_val=3, size=48)
    torch.save(chm_decoder_state(), tmp_path / "dinov3_vitl16_chmv2_dpt_head.pth")
    argv = ["run", "--head", "dinov3_vitl16_chmv2", "--head-weights", str(tmp_path / "dinov3_vitl16_chmv2_dpt_head.pth"),
            "--backbone", "vitb16", "--data-root", str(data), "--output", str(tmp_path / "out"), "--cfg-options",
            *TINY, "backbone.ffn_ratio=2.0", *SMALL_CHM, "train.max_iters=1000000"]
    code, out, err = run_cli(*argv)
    assert code == 0, err
    record = json.loads(next((tmp_path / "out").rglob("result.json")).read_text())
    assert record["task"] == "canopy-chm" and record["head"]["hub"] == "dinov3_vitl16_chmv2"
    assert len(record["head"]["sha256"]) == 64 and record["config"]["protocol"]["head"]["bins_strategy"] == "chmv2_mixlog"
    assert {"mae", "rmse", "r2", "bias"} <= set(record["metrics"]) and "head.pth" not in record["artifacts"]
    assert record["timings"]["protocol_s"] < 60  # a million training iterations were not run
    bad = chm_decoder_state()
    bad["project.conv.weight"] = torch.zeros(16, 16, 3, 3)  # the CHMv2 head has no projection after fusion
    torch.save(bad, tmp_path / "bad.pth")
    argv[4] = str(tmp_path / "bad.pth")
    code, _, err = run_cli(*argv)
    assert code == 2 and "unexpected keys (first: project.conv.weight)" in err and len(err.strip().splitlines()) == 1


def test_export_of_a_trained_dpt_head_reloads_with_the_same_metrics_and_the_official_config(run_cli, tmp_path):
    import yaml

    from dinobench.synthetic.dense import write_synthetic_depth_folder
    from dinobench.heads import build_depther

    data = write_synthetic_depth_folder(tmp_path / "depth", n_train=4, n_val=2, size=(32, 48))
    opts = [*TINY, "train.max_iters=3", "train.batch_size=2", "train.num_workers=0", "train.eval_every=0",
            "train.scheduler.warmup_iters=1", "protocol.loss.warm_iter=1", "transform.train.crop_size=[32,48]",
            "protocol.head.channels=16", "protocol.head.post_process_channels=[8,16,16,16]",
            "protocol.head.n_hidden_channels=8", "protocol.head.n_bins=16"]
    base = ["run", "--backbone", "vit_tiny", "--task", "depth-folder-dpt", "--data-root", str(data)]
    code, _, err = run_cli(*base, "--output", str(tmp_path / "a"), "--cfg-options", *opts)
    assert code == 0, err
    run_dir = next((tmp_path / "a").rglob("result.json")).parent
    trained = json.loads((run_dir / "result.json").read_text())
    assert {"head.pth", "head.json"} <= set(trained["artifacts"])
    code, out, err = run_cli("export", "--run", str(run_dir), "--output", str(tmp_path / "exported"))
    assert code == 0, err
    config = yaml.safe_load((tmp_path / "exported" / "config.yaml").read_text())["decoder_head"]
    assert config["type"] == "dpt" and config["n_output_channels"] == 16 and config["backbone_out_layers"] == [0, 1, 2, 3]
    backbone = trained["config"]["backbone"]
    from dinobench.backbones import create_backbone

    depther = build_depther(create_backbone("vit_tiny", **backbone), **config)  # the official builder's keywords
    depther.load_decoder(tmp_path / "exported" / "model_final.pth")  # strict, the official file layout
    code, _, err = run_cli(*base, "--output", str(tmp_path / "b"), "--cfg-options", *opts,
                           f"protocol.head_weights={tmp_path / 'exported' / 'model_final.pth'}")
    assert code == 0, err
    reloaded = json.loads(next((tmp_path / "b").rglob("result.json")).read_text())
    assert reloaded["metrics"] == trained["metrics"] and reloaded["head"]["hub"] == ""
    code, _, err = run_cli("export", "--run", str(run_dir), "--output", str(tmp_path / "exported"))
    assert code == 2 and "not empty" in err


def test_export_of_a_linear_probe_gives_the_hub_and_grid_layouts_with_the_same_metrics(run_cli, tmp_path):
    opts = ["protocol.epochs=1", "protocol.learning_rates=[0.01,0.1]", "protocol.n_last_blocks=[1]"]
    code, _, err = run_cli("run", "--backbone", "vit_tiny", "--task", "digits-linear", "--output", str(tmp_path / "a"),
                           "--cfg-options", *opts)
    assert code == 0, err
    run_dir = next((tmp_path / "a").rglob("result.json")).parent
    trained = json.loads((run_dir / "result.json").read_text())
    assert run_cli("export", "--run", str(run_dir), "--output", str(tmp_path / "x"))[0] == 0
    for name in ("linear_head.pth", "linear_classifiers.pth"):
        code, _, err = run_cli("run", "--backbone", "vit_tiny", "--task", "digits-linear", "--output",
                               str(tmp_path / name), "--cfg-options", f"protocol.head_weights={tmp_path / 'x' / name}")
        assert code == 0, err
        got = json.loads(next((tmp_path / name).rglob("result.json")).read_text())["metrics"]
        assert got["top1"] == trained["metrics"]["top1"] and got["top5"] == trained["metrics"]["top5"]
    code, _, err = run_cli("export", "--run", str(next((tmp_path / "linear_head.pth").rglob("result.json"))),
                           "--output", str(tmp_path / "y"))
    assert code == 2 and "evaluated a given head" in err
