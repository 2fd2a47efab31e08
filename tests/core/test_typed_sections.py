"""Typed dataset, transform and train sections, and a user's own task file (``--task PATH.py``, ``--include-path``).

Every registered reader declares the dataclass of its section and of the ``transform`` section its datasets read;
a typo in any of them (in a task file, a shipped config or ``--cfg-options``) is one line on stderr naming the
file, the key and the closest valid one (exit 2), before any data is read or any model is built.
"""

from __future__ import annotations

import dataclasses
import json
import os

import pytest

from conftest import TINY_OPTIONS
from dinobench.errors import ConfigError
from dinobench.plugin_manager import get_registries
from dinobench.registry import resolve_object
from dinobench.resolve import resolve_task

FIRST_PARTY_READERS = [spec.name for spec in get_registries().datasets if spec.source.startswith("dinobench.")]


def _typo(name: str) -> str:
    """A misspelling difflib maps back to ``name`` (last letter doubled)."""
    return name + name[-1]


def _write(path, text: str) -> str:
    path.write_text(text)
    return str(path)


class task_registered:
    """Registers ``cfg`` as task ``name`` on the live registries for a ``with`` block."""

    def __init__(self, name, cfg):
        self.name, self.cfg = name, cfg

    def __enter__(self):
        get_registries().tasks.add(self.name, self.cfg)

    def __exit__(self, *exc):
        del get_registries().tasks._entries[self.name]


@pytest.fixture
def task_dirs(monkeypatch):
    """``$DINOBENCH_TASK_DIRS`` empty for the test, restored and the registries rebuilt afterwards."""
    monkeypatch.setenv("DINOBENCH_TASK_DIRS", "")
    yield
    get_registries.cache_clear()


@pytest.fixture
def no_compute(monkeypatch):
    """Fails the test if a model would be built: every check must come first."""
    def refuse(*args, **kwargs):
        raise AssertionError("a backbone was built before the config was checked")
    monkeypatch.setattr("dinobench.runner.create_backbone", refuse)


def test_every_first_party_reader_declares_its_options_and_transform():
    assert len(FIRST_PARTY_READERS) >= 25
    for name in FIRST_PARTY_READERS:
        spec = get_registries().datasets.get(name)
        assert spec.options and spec.transform, f"reader {name!r} registers no options/transform dataclass"
        for target in (spec.options, spec.transform):
            cls = resolve_object(target)
            assert dataclasses.is_dataclass(cls), f"{name}: {target} is not a dataclass"
            cls()  # every field has a default


@pytest.mark.parametrize("reader", FIRST_PARTY_READERS)
def test_a_typo_in_any_readers_section_is_one_line_with_the_closest_key(reader, tmp_path, run_cli, no_compute):
    options = resolve_object(get_registries().datasets.get(reader).options)
    field = max((f.name for f in dataclasses.fields(options)), key=len)  # the longest name: an unambiguous typo
    task = _write(tmp_path / "my_task.py", f'dataset = dict(type="{reader}", {_typo(field)}=1)\n'
                                           'protocol = dict(type="knn")\n')
    code, out, err = run_cli("run", "--backbone", "vit_tiny", "--task", task, "--output", str(tmp_path / "out"))
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert f"task file {task}: dataset.{_typo(field)}: unknown key (did you mean {field}?)" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("reader, key, typo", [
    ("digits", "interpolation", "interpolaton"),
    ("ade20k", "train.cat_max_ratio", "train.cat_max_ration"),
    ("nyu", "train.rotation_deg", "train.rotation_degs"),
    ("coco", "eval.max_size", "eval.maxsize"),
    ("canopy_folder", "train.crop_size", "train.cropsize"),
    ("ucf101", "resize", "resise"),
    ("spair", "size", "sizes"),
    ("davis2017", "short_side", "shortside"),
])
def test_a_typo_in_the_transform_section_names_the_closest_key(reader, key, typo):
    *parents, leaf = typo.split(".")
    section = {leaf: 64}
    for parent in reversed(parents):
        section = {parent: section}
    cfg = {"dataset": {"type": reader}, "protocol": {"type": "knn"}, "transform": section}
    with task_registered("typo-task", cfg):
        with pytest.raises(ConfigError, match=rf"^transform\.{typo}: unknown key \(did you mean {key.split('.')[-1]}\?\)$"):
            resolve_task("typo-task", None)


def test_a_typo_in_the_train_section_of_a_shipped_config_names_the_closest_key(run_cli, tmp_path, no_compute):
    code, _, err = run_cli("run", "--backbone", "vit_tiny", "--task", "digits-attentive", "--output", str(tmp_path),
                           "--cfg-options", "train.max_iter=5")
    assert code == 2 and err.count("\n") == 1 and "did you mean train.max_iters?" in err


def test_a_typo_in_the_train_section_of_a_task_file_names_file_key_and_closest(run_cli, tmp_path, no_compute):
    task = _write(tmp_path / "probe.py", '_base_ = ["dinobench::tasks/digits-attentive.py"]\n'
                                         'train = dict(batch_sise=4)\n')
    code, _, err = run_cli("run", "--backbone", "vit_tiny", "--task", task, "--output", str(tmp_path))
    assert code == 2 and err.count("\n") == 1
    assert f"task file {task}: train.batch_sise: unknown key (did you mean batch_size?)" in err


def test_a_train_section_is_refused_by_a_protocol_that_trains_nothing(tmp_path):
    task = _write(tmp_path / "knn_trains.py", '_base_ = ["dinobench::tasks/digits-knn.py"]\n'
                                              'train = dict(max_iters=5)\n')
    with pytest.raises(ConfigError, match="train: protocol 'knn' trains nothing"):
        resolve_task(task, None)


def test_split_of_a_named_dataset_is_the_readers_own_option(tmp_path):
    base = ('protocol = dict(type="knn")\ntransform = dict(resize=16, crop=16)\n'
            'datasets = dict(train=dict(type="digits", from_split="train"), val=dict(type="digits", {}))\n')
    with pytest.raises(ConfigError, match=r"datasets\.val\.split: reader 'digits' has no split option; to take one "
                                          r"of the splits it returns, write datasets\.val\.from_split"):
        resolve_task(_write(tmp_path / "a.py", base.format('split="val"')), None)
    resolve_task(_write(tmp_path / "b.py", base.format('from_split="val"')), None)
    # a reader with its own split option (SPair's trn/val/test pairs) gets it in the named form too
    cfg = resolve_task(_write(tmp_path / "c.py", 'protocol = dict(type="correspondence")\ntransform = dict(size=64)\n'
                                                 'datasets = dict(val=dict(type="spair", split="trn"))\n'), None)
    assert cfg["datasets"]["val"]["split"] == "trn"


def test_a_task_file_equal_to_a_shipped_task_gives_its_protocol_hash(tmp_path, run_cli):
    """A user's task file built on the shipped bases runs end to end, named by its stem; the same config as the
    shipped task is the same protocol hash (comparable in a leaderboard)."""
    task = _write(tmp_path / "my-digits-knn.py", '_base_ = ["dinobench::_base_/datasets/digits.py", '
                                                 '"dinobench::_base_/protocols/knn.py"]\n'
                                                 'task = dict(description="my own copy")\n')
    options = [*TINY_OPTIONS, "transform.resize=16", "transform.crop=16"]
    hashes = {}
    for name in ("digits-knn", task):
        code, _, err = run_cli("run", "--backbone", "vit_tiny", "--task", name, "--output", str(tmp_path / "out"),
                               "--cfg-options", *options)
        assert code == 0, err
    for path in (tmp_path / "out").rglob("result.json"):
        record = json.loads(path.read_text())
        hashes[record["task"]] = record["protocol_hash"]
    assert set(hashes) == {"digits-knn", "my-digits-knn"}
    assert hashes["digits-knn"] == hashes["my-digits-knn"]


def test_include_path_registers_a_folder_of_task_files(tmp_path, run_cli, task_dirs):
    folder = tmp_path / "tasks"
    folder.mkdir()
    _write(folder / "digits-knn-k3.py", '_base_ = ["dinobench::tasks/digits-knn.py"]\nprotocol = dict(nb_knn=[3])\n')
    code, out, err = run_cli("list", "tasks", "--json", "--include-path", str(folder))
    assert code == 0, err
    assert "digits-knn-k3" in {row["name"] for row in json.loads(out)}
    assert resolve_task("digits-knn-k3", None)["protocol"]["nb_knn"] == [3]
    assert str(folder.resolve()) in os.environ["DINOBENCH_TASK_DIRS"]
    (folder / "digits-knn.py").write_text('protocol = dict(type="knn")\ndataset = dict(type="digits")\n')
    code, _, err = run_cli("list", "tasks", "--include-path", str(folder))  # a shipped name taken again
    assert code == 2 and err.count("\n") == 1 and "task 'digits-knn' registered twice" in err
    (folder / "digits-knn.py").unlink()
    code, _, err = run_cli("list", "tasks", "--include-path", str(tmp_path / "missing"))
    assert code == 2 and "--include-path" in err and "not a folder" in err


def test_a_missing_task_file_and_a_broken_base_are_one_line(tmp_path, run_cli):
    code, _, err = run_cli("run", "--backbone", "vit_tiny", "--task", str(tmp_path / "nope.py"))
    assert code == 2 and err.count("\n") == 1 and "no such task file" in err
    task = _write(tmp_path / "bad_base.py", '_base_ = ["dinobench::_base_/datasets/imagenett.py"]\n')
    code, _, err = run_cli("run", "--backbone", "vit_tiny", "--task", task)
    assert code == 2 and err.count("\n") == 1 and "no such shipped config" in err
