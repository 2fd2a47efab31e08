"""Typed config values: wrong types and impossible values are one ConfigError line (exit 2) before any compute."""

from pathlib import Path

import pytest

from conftest import TINY_OPTIONS

from dinobench.context import FeaturesConfig
from dinobench.errors import ConfigError

RUN = ("run", "--backbone", "vit_tiny", "--task", "digits-knn")


@pytest.mark.parametrize("option, message", [
    ("protocol.nb_knn=abc", "protocol.nb_knn='abc': expected a list of int"),
    ("features.batch_size=abc", "features.batch_size='abc': expected int"),
    ("features.batch_size=0", "features.batch_size=0: must be >= 1"),
    ("features.num_workers=-1", "features.num_workers=-1: must be >= 0"),
    ("features.chunk_size=0", "features.chunk_size=0: must be >= 1"),
    ("protocol.temperature=-1", "protocol.temperature > 0"),
    ("protocol=3", "protocol is a section (chunk_size, "),
    ("transform=3", "transform is a section (crop, interpolation, resize, ...); set its keys (transform.<key>=value)"),
    ("features=[1]", "features is a section (batch_size, "),
    ("backbone.depth=0", "n_blocks must be an int >= 1"),
])
def test_bad_values_are_one_line_exit_2_and_nothing_written(run_cli, tmp_path, option, message):
    """Every typed section and a section replaced by a scalar."""
    code, _, err = run_cli(*RUN, "--output", str(tmp_path), "--cfg-options", *TINY_OPTIONS, option)
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1
    assert not list(tmp_path.rglob("result.json"))


def test_features_config_checks_ranges():
    FeaturesConfig(batch_size=1, num_workers=0, chunk_size=None)
    with pytest.raises(ConfigError, match="features.batch_size=0"):
        FeaturesConfig(batch_size=0)


def test_k_above_the_train_split_is_said_once(caplog):
    import torch

    from dinobench.protocols import knn

    knn._WARNED.clear()
    train, labels = torch.randn(12, 4), torch.arange(12) % 3
    for _ in range(3):
        knn.knn_class_scores(train, labels, torch.randn(5, 4), [5, 50], 0.07, 3)
    warnings = [r.getMessage() for r in caplog.records if "k=50 > 12 train samples" in r.getMessage()]
    assert len(warnings) == 1


@pytest.mark.parametrize("tolerance", ["top1=abc", "top1=-1", "top1=nan", "top1=inf", "=2", "top1"])
def test_check_tolerance_values_are_typed(run_cli, tmp_path, tolerance):
    from helpers import make_result

    from dinobench.results import write_jsonl

    baseline = write_jsonl(tmp_path / "b.jsonl", [make_result(50.0)])
    code, _, err = run_cli("check", "--baseline", str(baseline), "--results", str(baseline), "--tolerance", tolerance)
    assert code == 2 and f"--tolerance '{tolerance}': expected METRIC=ABS" in err
    assert len(err.strip().splitlines()) == 1


SSL_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "train" / "vit_tiny_digits_pretrain.py"
DINOTXT_CONFIG = SSL_CONFIG.with_name("dinotxt_vit_tiny_digits.py")


@pytest.mark.parametrize("body,overrides,expected", [
    ("train = dict(\n", [], "cannot load config: SyntaxError"),
    ('_base_ = ["missing.py"]\n', [], "cannot load config: FileNotFoundError"),
    (f'_base_ = ["{SSL_CONFIG}"]\ntrain = 3\n', [], "train must be a section (dict(...)), got 3"),
    (f'_base_ = ["{SSL_CONFIG}"]\noptim = dict(lr="fast")\n', [], "optim.lr must be a number, got 'fast'"),
    (f'_base_ = ["{SSL_CONFIG}"]\n', ["crops=2"], "crops is a section ("),
    (f'_base_ = ["{SSL_CONFIG}"]\n', ["optim.epochs=[1,2]"], "(override): optim.epochs must be a number"),
    (f'_base_ = ["{DINOTXT_CONFIG}"]\ntrain = 3\n', [], "train must be a section (dict(...)), got 3"),
    (f'_base_ = ["{DINOTXT_CONFIG}"]\n', ["model.context_length=abc"],
     "(override): model.context_length='abc': expected int"),
    (f'_base_ = ["{DINOTXT_CONFIG}"]\nmodel = dict(embed_dimm=8)\n', [],
     "bad.py: model.embed_dimm: unknown key (did you mean embed_dim?)"),
    (f'_base_ = ["{DINOTXT_CONFIG}"]\ndata = dict(type="captions")\n', [], "data.type='captions': expected"),
])
def test_malformed_training_configs_are_one_line_before_anything_is_built(run_cli, tmp_path, body, overrides,
                                                                           expected):
    config = tmp_path / "bad.py"
    config.write_text(body)
    code, _, err = run_cli("train", "--config", str(config), "--output", str(tmp_path / "run"), *overrides)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and expected in lines[0], err
    assert not (tmp_path / "run").exists()


def test_a_task_config_file_with_a_scalar_section_is_one_line():
    from dinobench.resolve import _check_sections

    with pytest.raises(ConfigError, match=r"task 'x': transform must be a section \(dict\(\.\.\.\)\), got 3"):
        _check_sections({"protocol": {"type": "knn"}, "dataset": {"type": "digits"}, "transform": 3}, "task 'x'")


def test_none_turns_a_section_off_or_back_to_its_defaults(run_cli, tmp_path):
    from dinobench.resolve import resolve_task

    cfg = resolve_task("digits-knn", [*TINY_OPTIONS, "transform=None", "features=None"])
    assert cfg["transform"] == {} and cfg["features"]["batch_size"] >= 1  # defaults, not a crash


def test_cfg_options_keep_quoted_strings_verbatim_and_refuse_what_they_would_change():
    from dinobench.config import parse_options

    got = parse_options(['protocol.templates=["a photo of the digit {}."]', "a='x  y'", "b=1,2", "c=[a, b]",
                         "d=true", "e=(1, 2)", "f=0.1"])
    assert got == {"protocol.templates": ["a photo of the digit {}."], "a": "x  y", "b": [1, 2], "c": ["a", "b"],
                   "d": True, "e": (1, 2), "f": 0.1}
    for bad in ("a=a photo of {}", "a=[a photo, b]"):
        with pytest.raises(ConfigError, match="a value with spaces must be quoted"):
            parse_options([bad])


def test_head_weights_given_twice_with_different_files_is_one_line():
    from dinobench.resolve import with_head

    with pytest.raises(ConfigError, match="--head-weights a.pth and --cfg-options protocol.head_weights=b.pth name "
                                          "different files"):
        with_head("dinov3_vit7b16_lc", "a.pth", None, None, ["protocol.head_weights=b.pth"])
    _, _, options = with_head("dinov3_vit7b16_lc", "a.pth", None, None, ["protocol.head_weights=a.pth"])
    assert options["protocol.head_weights"] == "a.pth"


def test_template_and_resize_values_that_would_fail_later_are_one_line_now():
    from dinobench.data.detection_transforms import build_det_eval_transform
    from dinobench.protocols.zeroshot import ZeroShotProtocol
    from dinobench.protocols.zeroshot_seg import ZeroShotSegProtocol

    for protocol in (ZeroShotProtocol, ZeroShotSegProtocol):
        for bad in (["a {} of {}"], ["a {name}"], ["a {} {"], ["a {0} and {1}"]):
            with pytest.raises(ConfigError, match=r"(is not a prompt template with one|a list of strings with \{\})"):
                protocol({"templates": bad})
        assert protocol({"templates": ["a photo of a {}."]}).config.templates == ["a photo of a {}."]
    with pytest.raises(ConfigError, match="transform.eval.max_size=800 must be larger than transform.eval.scale=800"):
        build_det_eval_transform({"scale": 800, "max_size": 800}, (0.5,) * 3, (0.2,) * 3)
