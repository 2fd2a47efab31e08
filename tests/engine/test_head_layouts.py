"""Head export layouts come from a hook (no per-layout chain in head_export.py): each family registers the files
its trained heads become; a plugin adds its own; a layout cannot write outside the export folder."""

from __future__ import annotations

import json

import pytest
import torch

from dinobench.errors import WeightsError
from dinobench.head_export import export_head
from dinobench.plugin_manager import get_registries
from dinobench.registry import HeadLayoutRegistry, resolve_object


def _run_folder(tmp_path, layout: str, state: dict, config: dict | None = None):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "result.json").write_text("{}")
    torch.save(state, folder / "head.pth")
    (folder / "head.json").write_text(json.dumps({"layout": layout, "config": config or {}}))
    return folder


def test_first_party_layouts_are_registered_by_their_families():
    layouts = get_registries().head_layouts
    assert {"classifier", "segmentation", "depth"} <= set(layouts.names()) and len(layouts.names()) >= 4
    for entry in layouts:
        assert callable(resolve_object(entry.files)) and entry.source.startswith("dinobench.plugins."), entry.name


def test_a_plugins_layout_is_exported_and_an_unknown_one_is_one_line(tmp_path):
    folder = _run_folder(tmp_path, "toy", {"w": torch.ones(2)}, {"hidden": 3})
    layouts = HeadLayoutRegistry()
    layouts.add("toy", lambda state, config: {"toy.pth": {"model": state}, "toy.json": json.dumps(config)})
    written = export_head(folder, tmp_path / "out", layouts=layouts)
    assert sorted(p.name for p in written) == ["toy.json", "toy.pth"]
    assert json.loads((tmp_path / "out" / "toy.json").read_text()) == {"hidden": 3}
    assert torch.equal(torch.load(tmp_path / "out" / "toy.pth", weights_only=True)["model"]["w"], torch.ones(2))
    with pytest.raises(WeightsError, match=r"unknown head layout 'toy' \(registered: classifier, depth, "):
        export_head(folder, tmp_path / "out2")


def test_a_layout_cannot_name_a_file_outside_the_export_folder(tmp_path):
    folder = _run_folder(tmp_path, "evil", {"w": torch.ones(1)})
    layouts = HeadLayoutRegistry()
    layouts.add("evil", lambda state, config: {"../escaped.pth": state})
    with pytest.raises(WeightsError, match="names the file '../escaped.pth'; a file name is one plain path component"):
        export_head(folder, tmp_path / "out", layouts=layouts)
    assert not (tmp_path / "escaped.pth").exists() and not (tmp_path / "out").exists()


def test_a_classifier_head_without_weight_and_bias_is_refused_naming_the_file(tmp_path):
    folder = _run_folder(tmp_path, "classifier", {"kernel": torch.ones(2)}, {"classifier": "x"})
    with pytest.raises(WeightsError, match=r"head\.pth: a classifier head holds weight and bias, found \['kernel'\]"):
        export_head(folder, tmp_path / "out")
