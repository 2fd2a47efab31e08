"""Tasks with several named datasets (``datasets=dict(<name>=dict(type=..., from_split=...))``): every one is read
and layout-validated before any compute, checked against the dataset contract, and recorded."""

from __future__ import annotations

import json

import pytest

from conftest import TINY_OPTIONS, registered

import dinobench
from dinobench.errors import ConfigError, DataError, PluginError
from dinobench.api import DatasetLike, hookimpl
from dinobench.runner import build_datasets
from dinobench.resolve import resolve_task

DIGITS = {"transform": {"resize": 16, "crop": 16, "interpolation": "bilinear"}}
THREE = {"datasets": {"train": {"type": "digits", "from_split": "train"},
                      "val": {"type": "digits", "from_split": "val"},
                      "val_b": {"type": "digits", "from_split": "val", "split_seed": 3}},
         "protocol": {"type": "knn", "nb_knn": [5]}, **DIGITS}


class NotADataset:
    """What a broken reader might return: sized and indexable, but no fingerprint / describe()."""

    def __len__(self):
        return 3

    def __getitem__(self, index):
        return index


class TasksPlugin:
    calls: list[str] = []

    @hookimpl
    def dinobench_register_datasets(self, registry):
        registry.add("broken_reader", lambda cfg, root: {"train": NotADataset(), "val": NotADataset()})

        def missing(cfg, root):
            TasksPlugin.calls.append("missing")
            raise DataError(f"{root}/images: folder not found; pass --data-root")
        registry.add("missing_reader", missing)

    @hookimpl
    def dinobench_register_tasks(self, registry):
        registry.add("digits-three", THREE)
        registry.add("digits-nosplit", {**THREE, "datasets": {**THREE["datasets"],
                                                              "val_b": {"type": "digits", "from_split": "test"}}})
        registry.add("digits-noval", {**THREE, "datasets": {"train": {"type": "digits", "from_split": "train"}}})
        registry.add("broken-reader-knn", {"dataset": {"type": "broken_reader"}, "protocol": {"type": "knn"}})
        registry.add("late-missing-knn", {"datasets": {"train": {"type": "digits", "from_split": "train"},
                                                       "val": {"type": "missing_reader"}},
                                          "protocol": {"type": "knn"}})
        registry.add("both-forms", {**THREE, "dataset": {"type": "digits"}})


@pytest.fixture(scope="module", autouse=True)
def tasks_plugin():
    with registered(TasksPlugin(), "tasks-plugin") as plugin:
        yield plugin


def test_named_datasets_are_read_once_per_reader_config_and_picked_by_split():
    datasets, types = build_datasets(resolve_task("digits-three", None), None)
    assert sorted(datasets) == ["train", "val", "val_b"] and set(types.values()) == {"digits"}
    assert all(isinstance(d, DatasetLike) for d in datasets.values())
    assert len(datasets["train"]) == 1438 and len(datasets["val"]) == 359
    assert datasets["val_b"].fingerprint != datasets["val"].fingerprint  # another seeded split: another dataset


def test_a_task_with_three_named_datasets_runs_and_records_every_one(tmp_path):
    result = dinobench.run(backbone="vit_tiny", task="digits-three", output_dir=str(tmp_path), options=TINY_OPTIONS)
    assert set(result.dataset["splits"]) == {"train", "val", "val_b"}
    assert result.dataset["types"] == {"train": "digits", "val": "digits", "val_b": "digits"}
    assert result.dataset["fingerprint"].count("+") == 2  # all three enter the protocol hash
    record = json.loads(next(tmp_path.rglob("result.json")).read_text())
    assert record["config"]["datasets"]["val_b"] == {"type": "digits", "from_split": "val", "split_seed": 3}


@pytest.mark.parametrize("task, error, message", [
    ("digits-nosplit", ConfigError, r"datasets\.val_b: dataset 'digits' has no split 'test' \(it has: train, val\)"),
    ("digits-noval", ConfigError, r"protocol 'knn' needs dataset 'val' \(the task has: train\)"),
    ("broken-reader-knn", PluginError, r"dataset 'broken_reader' \(train\): its reader returned NotADataset"),
    ("both-forms", ConfigError, r"either dataset=dict\(type=\.\.\.\) or datasets="),
])
def test_bad_named_datasets_are_one_line_errors_before_any_model_is_built(task, error, message, tmp_path):
    with pytest.raises(error, match=message):
        dinobench.run(backbone="vit_tiny", task=task, output_dir=str(tmp_path), options=TINY_OPTIONS)
    assert not list(tmp_path.rglob("result.json"))


def test_every_dataset_is_validated_before_compute(tmp_path, monkeypatch):
    built = []
    monkeypatch.setattr("dinobench.runner.create_backbone", lambda *a, **k: built.append(a) or None)
    with pytest.raises(DataError, match="folder not found; pass --data-root"):
        dinobench.run(backbone="vit_tiny", task="late-missing-knn", output_dir=str(tmp_path))
    assert TasksPlugin.calls == ["missing"] and built == []  # the second dataset failed: no backbone was built


def test_cli_prints_a_named_dataset_error_as_one_line(run_cli, tmp_path):
    code, _, err = run_cli("run", "--backbone", "vit_tiny", "--task", "digits-nosplit", "--output", str(tmp_path))
    assert code == 2 and err.count("\n") == 1 and "datasets.val_b" in err
