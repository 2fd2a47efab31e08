"""The official recipe is the default: every shipped task citing one (``task.official``) resolves to the values
scripts/official_recipes.py extracted from an official checkout (tests/fixtures/official_recipes.json); records
say whether a run used it or which keys differ; ``dinobench config`` shows it before anything runs."""

from __future__ import annotations

import json
import math

import pytest

from conftest import FIXTURES
from dinobench.config import flatten
from dinobench.errors import ConfigError
from dinobench.leaderboard import results_frame
from dinobench.plugin_manager import get_registries
from dinobench.recipes import backbone_defaults, official_source, recipe_line, recipe_record
from dinobench.results import MainMetric, Result
from dinobench.resolve import resolve_task
from dinobench.tasks import find_task, load_task_config

OFFICIAL = json.loads((FIXTURES / "official_recipes.json").read_text())["recipes"]


def _same(got, want) -> bool:
    if isinstance(want, float) or isinstance(got, float):
        return isinstance(got, (int, float)) and math.isclose(float(got), float(want), rel_tol=1e-9, abs_tol=0)
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and all(_same(g, w) for g, w in zip(got, want))
    return got == want


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_shipped_task_defaults_equal_the_official_recipe(name):
    entry = OFFICIAL[name]
    cfg = flatten(resolve_task(entry["task"], None, entry.get("backbone")))
    wrong = {key: (cfg.get(key, "<unset>"), want, entry["where"][key])
             for key, want in entry["values"].items() if not _same(cfg.get(key, "<unset>"), want)}
    assert not wrong, f"{name}: (ours, official, where) {wrong}"
    assert official_source(resolve_task(entry["task"], None)) == entry["official"]


def test_every_task_citing_an_official_recipe_is_in_the_fixture():
    citing = {spec.name for spec in get_registries().tasks
              if official_source(load_task_config(find_task(spec.name, get_registries()).config))}
    assert citing == {entry["task"] for entry in OFFICIAL.values()}
    assert {"imagenet-linear", "imagenet-knn", "imagenet-logreg", "imagenet-zeroshot", "davis2017-tracking",
            "coco-plaindetr"} <= citing


def test_per_backbone_defaults_sit_under_the_users_options():
    assert resolve_task("coco-plaindetr", None, "vit7b16")["protocol"]["head"]["n_windows_sqrt"] == 3
    assert resolve_task("coco-plaindetr", None, "vitl16plus")["protocol"]["head"]["n_windows_sqrt"] == 2
    assert resolve_task("coco-plaindetr", None, "vitb16")["protocol"]["head"]["n_windows_sqrt"] == 0
    assert resolve_task("coco-plaindetr", ["protocol.head.n_windows_sqrt=1"], "vit7b16")["protocol"]["head"][
        "n_windows_sqrt"] == 1
    assert "by_backbone" not in resolve_task("coco-plaindetr", None, "vit7b16")
    assert backbone_defaults({"vit*": {"a": 1}, "vitl16": {"a": 2}}, "vitl16", "t") == {"a": 2}  # later wins
    with pytest.raises(ConfigError, match=r"t: by_backbone must be dict"):
        backbone_defaults({"vit*": 3}, "vitl16", "t")


def test_a_changed_key_is_named_and_runtime_keys_do_not_count():
    defaults = resolve_task("imagenet-linear", None)
    assert recipe_record(defaults, defaults, ()) == {"official": "dinov3/eval/linear.py", "equal": True, "differs": []}
    changed = resolve_task("imagenet-linear", ["protocol.n_last_blocks=[1,4]", "protocol.chunk_size=7",
                                               "protocol.train_augmentation=false"])
    record = recipe_record(changed, defaults, ("protocol.chunk_size",))
    assert record == {"official": "dinov3/eval/linear.py", "equal": False,
                      "differs": ["protocol.n_last_blocks", "protocol.train_augmentation"]}
    assert recipe_line(record) == ("modified recipe: protocol.n_last_blocks, protocol.train_augmentation differ "
                                   "from dinov3/eval/linear.py")
    assert recipe_record(changed, resolve_task("digits-linear", None), ()) == {}  # no official recipe: nothing said
    assert recipe_line({}) == "no official recipe"


def _record(recipe, created, hash_="h1"):
    return Result(task="imagenet-linear", protocol="linear", protocol_version="1", protocol_plugin="dinobench",
                  protocol_hash=hash_, backbone="vitl16", weights="w.pth", weights_sha256="ab" * 32, seed=0,
                  metrics={"top1": 80.0}, main_metric=MainMetric("top1", 80.0), config={}, dataset={},
                  recipe=recipe, created_at=created)


def test_the_leaderboard_marks_a_modified_recipe():
    official = {"official": "dinov3/eval/linear.py", "equal": True, "differs": []}
    modified = {"official": "dinov3/eval/linear.py", "equal": False, "differs": ["protocol.n_last_blocks"]}
    frame = results_frame([_record(official, "1", "h1"), _record(modified, "2", "h2"), _record(official, "3", "h1")])
    columns = dict(zip(frame["column"], frame["note"]))
    assert "imagenet-linear" in columns and columns["imagenet-linear"] == ""
    (marked,) = [c for c in columns if c.endswith(" *")]
    assert "modified recipe: protocol.n_last_blocks differ from dinov3/eval/linear.py" in columns[marked]


def test_config_command_prints_the_resolved_recipe(run_cli):
    code, out, err = run_cli("config", "imagenet-linear", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["recipe"] == {"official": "dinov3/eval/linear.py", "equal": True, "differs": []}
    assert data["config"]["protocol"]["n_last_blocks"] == [1] and len(data["config_hash"]) == 16
    code, out, err = run_cli("config", "coco-plaindetr", "--backbone", "vit7b16", "--cfg-options",
                             "protocol.inference.topk=10")
    assert code == 0, err
    assert out.startswith("# task coco-plaindetr: protocol plaindetr") and "n_windows_sqrt: 3" in out
    assert "# modified recipe: protocol.inference.topk differ from dinov3/hub/detectors.py" in out
    code, out, err = run_cli("config", "imagenet-linear", "--cfg-options", "protocol.n_last_block=[1]")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "did you mean protocol.n_last_blocks" in err
    code, out, err = run_cli("config", "imagenet-lineer")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "imagenet-linear" in err


def test_a_users_task_file_extending_an_official_task_is_compared_with_it(tmp_path):
    """It inherits task.official; its own values are not the recipe: the shipped task citing it is."""
    from dinobench.resolve import recipe_of

    same, changed = tmp_path / "my-linear.py", tmp_path / "my-grid.py"
    same.write_text('_base_ = ["dinobench::tasks/imagenet-linear.py"]\n')
    changed.write_text('_base_ = ["dinobench::tasks/imagenet-linear.py"]\nprotocol = dict(n_last_blocks=[1, 4])\n')
    registries = get_registries()
    for path, differs in ((same, []), (changed, ["protocol.n_last_blocks"])):
        record = recipe_of(find_task(str(path), registries), resolve_task(str(path), None), "vitl16", None)
        assert record == {"official": "dinov3/eval/linear.py", "equal": not differs, "differs": differs}
