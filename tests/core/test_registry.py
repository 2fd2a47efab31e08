import pytest

from dinobench.errors import PluginError, UnknownNameError
from dinobench.registry import BackboneRegistry, TaskRegistry


def test_unknown_name_suggests_close_matches():
    reg = BackboneRegistry()
    for name in ("vits16", "vitb16", "vitl16"):
        reg.add(name, "x:y")
    with pytest.raises(UnknownNameError) as err:
        reg.get("vitl61")
    assert "did you mean 'vitl16'" in str(err.value)
    assert err.value.suggestions[0] == "vitl16"


def test_duplicate_name_is_refused_naming_both_sources():
    reg = BackboneRegistry()
    reg._current_source = "first"
    reg.add("a", "x:y")
    reg._current_source = "second"
    with pytest.raises(PluginError, match="by first and by second"):
        reg.add("a", "x:z")


def test_source_is_recorded(tmp_path):
    reg = TaskRegistry()
    reg._current_source = "pkg"
    (tmp_path / "foo-knn.py").write_text("x = 1\n")
    (tmp_path / "_helper.py").write_text("x = 1\n")
    specs = reg.add_config_dir(tmp_path)
    assert [s.name for s in specs] == ["foo-knn"]
    assert reg.get("foo-knn").source == "pkg"


def test_first_party_registries_have_the_contract_names():
    import dinobench

    backbones = dinobench.list_backbones()
    for name in ("vits16", "vits16plus", "vitb16", "vitl16", "vith16plus", "vit7b16", "vit_tiny"):
        assert name in backbones
    assert {"digits-knn", "imagenet-knn"} <= set(dinobench.list_tasks())
    assert {"digits", "imagenet", "folder"} <= set(dinobench.list_datasets())
