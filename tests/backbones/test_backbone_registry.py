"""Every registered backbone, built tiny, honours the backbone contract (timm's registry-wide tests);
``feature_info`` matches the real outputs; broken plugins and bad config values end in one line."""

from __future__ import annotations

import json

import pytest

from conftest import registered
import torch
from torch import nn

import dinobench
from dinobench import plugin_manager
from dinobench.backbones import dinov3_convnext as cnx
from dinobench.backbones.contract import FORWARD_FEATURES_KEYS, check_backbone, level_info, n_levels
from dinobench.backbones.export import export_hf
from dinobench.backbones.factory import AUTO_NAME, count_parameters, tiny_overrides
from dinobench.data.transforms import build_eval_transform, build_train_transform
from dinobench.errors import ConfigError, DinobenchError, PluginError, WeightsError
from dinobench.heads.depth import BinsToDepth, depth_bins
from dinobench.hookspecs import hookimpl

NAMES = plugin_manager.get_registries().backbones.names()
#: the "hf" pseudo-backbone reads its architecture from config.json: one case per first-party family
HF_SOURCES = {"dinov3_vit": "vits16", "dinov2_vit": "dinov2_vits14_reg", "dinov3_convnext": "convnext_tiny"}
CASES = [n for n in NAMES if n != AUTO_NAME] + [f"{AUTO_NAME}:{f}" for f in HF_SOURCES if AUTO_NAME in NAMES]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """``case -> tiny model`` (built once per module, random init seeded by the case name)."""
    cache: dict[str, nn.Module] = {}

    def get(case: str) -> nn.Module:
        if case not in cache:
            torch.manual_seed(sum(map(ord, case)))
            name, _, family = case.partition(":")
            if name == AUTO_NAME:
                source = dinobench.create_backbone(HF_SOURCES[family], **tiny_overrides(HF_SOURCES[family]))
                folder = export_hf(source, tmp_path_factory.mktemp(family) / "hf")
                cache[case] = dinobench.backbones.from_pretrained(folder)
            else:
                cache[case] = dinobench.create_backbone(name, **tiny_overrides(name))
        return cache[case]

    return get


def _images(model: nn.Module, batch: int = 2) -> torch.Tensor:
    """A non-square batch, not a multiple of the coarsest stride in height (floor semantics)."""
    stride = max([model.patch_size] + [lv["reduction"] for lv in level_info(model)])
    generator = torch.Generator().manual_seed(0)
    return torch.randn(batch, 3, 2 * stride + stride // 2, 3 * stride, generator=generator)


# ----------------------------------------------------------------------------- every registered name
@pytest.mark.parametrize("name", NAMES)
def test_full_size_builds_on_meta_and_matches_its_listing(name):
    """Every variant at its real size (meta device: no memory): static contract + registry metadata."""
    spec = plugin_manager.get_registries().backbones.get(name)
    if name == AUTO_NAME:
        with pytest.raises(ConfigError, match="--weights DIR"):
            dinobench.create_backbone(name)
        assert count_parameters(name) is None
        return
    with torch.device("meta"):
        model = dinobench.create_backbone(name)
    check_backbone(model, name)
    assert spec.embed_dim in (None, model.embed_dim) and spec.patch_size in (None, model.patch_size)
    assert len(model.feature_info) == model.n_blocks == n_levels(model)
    assert model.feature_info[-1]["num_chs"] == model.embed_dim
    assert count_parameters(name) == sum(p.numel() for p in model.parameters()) > 0
    if spec.source.startswith("dinobench."):  # the listing's count, registered without building the model
        assert spec.params == count_parameters(name)


@pytest.mark.parametrize("case", CASES)
def test_tiny_backbone_honours_the_contract(case, tiny):
    model = tiny(case)
    name = case.partition(":")[0]
    for attr in ("embed_dim", "patch_size", "n_storage_tokens", "n_blocks"):
        assert isinstance(getattr(model, attr), int) and not isinstance(getattr(model, attr), bool), attr
    assert model.backbone_name == name and not model.training
    x = _images(model)
    check_backbone(model, name, x)  # raises a one-line PluginError naming what is wrong
    batch, dim, storage = x.shape[0], model.embed_dim, model.n_storage_tokens
    n_patches = (x.shape[-2] // model.patch_size) * (x.shape[-1] // model.patch_size)
    with torch.no_grad():
        out = model.forward_features(x)
        assert set(FORWARD_FEATURES_KEYS) <= set(out)
        assert out["x_norm_clstoken"].shape == (batch, dim)
        assert out["x_storage_tokens"].shape == (batch, storage, dim)
        assert out["x_norm_patchtokens"].shape == (batch, n_patches, dim)
        assert out["x_prenorm"].shape == (batch, 1 + storage + n_patches, dim)
        torch.testing.assert_close(model(x), out["x_norm_clstoken"])
        assert torch.isfinite(out["x_prenorm"]).all()


@pytest.mark.parametrize("case", CASES)
def test_get_intermediate_layers_semantics(case, tiny):
    """Official semantics: n=int takes the last n levels, n=[...] the given ones (negative from the
    end), reshape gives NCHW maps, class/extra tokens zip per level, norm=False the raw output."""
    model = tiny(case)
    x = _images(model)
    total, storage = n_levels(model), model.n_storage_tokens
    with torch.no_grad():
        feats = model.forward_features(x)
        (last,) = model.get_intermediate_layers(x, n=1)
        torch.testing.assert_close(last, feats["x_norm_patchtokens"])
        torch.testing.assert_close(model.get_intermediate_layers(x, n=[-1])[0], last)
        (raw,) = model.get_intermediate_layers(x, n=1, norm=False)
        torch.testing.assert_close(raw, feats["x_prenorm"][:, 1 + storage:])
        k = min(2, total)
        by_count = model.get_intermediate_layers(x, n=k)
        by_index = model.get_intermediate_layers(x, n=list(range(total - k, total)))
        assert len(by_count) == len(by_index) == k
        for a, b in zip(by_count, by_index):
            torch.testing.assert_close(a, b)
        levels = list(range(total))
        full = model.get_intermediate_layers(x, n=levels, reshape=True, return_class_token=True,
                                             return_extra_tokens=True)
        tokens = model.get_intermediate_layers(x, n=levels)
        assert len(full) == total
        for info, (patches, cls, extra), flat in zip(level_info(model), full, tokens):
            channels = info["num_chs"]
            assert cls.shape == (x.shape[0], channels) and extra.shape == (x.shape[0], storage, channels)
            torch.testing.assert_close(patches.flatten(2).transpose(1, 2), flat)
        (_, cls_last, extra_last) = full[-1]
        torch.testing.assert_close(cls_last, feats["x_norm_clstoken"])
        torch.testing.assert_close(extra_last, feats["x_storage_tokens"])
        ((_, cls_only),) = model.get_intermediate_layers(x, n=1, return_class_token=True)
        torch.testing.assert_close(cls_only, cls_last)


@pytest.mark.parametrize("case", CASES)
def test_feature_info_matches_real_channels_strides_and_modules(case, tiny):
    """Each level's map has ``num_chs`` channels at ``H // reduction``, and is the output of the
    submodule ``module`` names (captured with a forward hook)."""
    model = tiny(case)
    x = _images(model)
    levels = level_info(model)
    assert [lv["index"] for lv in levels] == list(range(n_levels(model)))
    assert level_info(model, [-1]) == [levels[-1]] and level_info(model, [0, -1]) == [levels[0], levels[-1]]
    captured: dict[int, torch.Tensor] = {}
    hooks = [model.get_submodule(lv["module"]).register_forward_hook(
        lambda _m, _i, output, i=lv["index"]: captured.__setitem__(i, output)) for lv in levels]
    try:
        with torch.no_grad():
            maps = model.get_intermediate_layers(x, n=[lv["index"] for lv in levels], reshape=True, norm=False)
    finally:
        for hook in hooks:
            hook.remove()
    assert sorted(captured) == [lv["index"] for lv in levels]
    for lv, fmap in zip(levels, maps):
        h, w = x.shape[-2] // lv["reduction"], x.shape[-1] // lv["reduction"]
        assert fmap.shape == (x.shape[0], lv["num_chs"], h, w), lv
        out = captured[lv["index"]]
        module_map = out if out.ndim == 4 else out[:, 1 + model.n_storage_tokens:].transpose(1, 2).reshape(fmap.shape)
        torch.testing.assert_close(module_map, fmap)


# ----------------------------------------------------------------------------- families in detail
def test_first_party_feature_info_values():
    with torch.device("meta"):
        vit, v2, convnext = (dinobench.create_backbone(n) for n in ("vitl16", "dinov2_vitg14", "convnext_base"))
    assert vit.feature_info[4] == {"index": 4, "module": "blocks.4", "num_chs": 1024, "reduction": 16}
    assert len(vit.feature_info) == 24 and len(v2.feature_info) == 40
    assert {(lv["num_chs"], lv["reduction"]) for lv in v2.feature_info} == {(1536, 14)}
    assert [(lv["module"], lv["num_chs"], lv["reduction"]) for lv in convnext.feature_info] == [
        ("stages.0", 128, 4), ("stages.1", 256, 8), ("stages.2", 512, 16), ("stages.3", 1024, 32)]


def test_convnext_patch_size_option_puts_every_level_at_that_stride():
    torch.manual_seed(0)
    model = cnx.build("convnext_tiny", **cnx.TINY_OVERRIDES, patch_size=16).eval()
    assert [lv["reduction"] for lv in model.feature_info] == [16] * 4
    x = torch.randn(1, 3, 80, 112)
    check_backbone(model, "convnext_tiny", x)
    maps = model.get_intermediate_layers(x, n=4, reshape=True)
    assert [tuple(m.shape[1:]) for m in maps] == [(8, 5, 7), (16, 5, 7), (24, 5, 7), (32, 5, 7)]


class ThirdPartyViT(nn.Module):
    """A minimal backbone without ``feature_info`` or ``n_blocks`` (as older plugins are)."""

    def __init__(self, embed_dim: int = 12, patch_size: int = 4) -> None:
        super().__init__()
        self.embed_dim, self.patch_size, self.n_storage_tokens = embed_dim, patch_size, 0
        self.proj = nn.Conv2d(3, embed_dim, patch_size, patch_size)
        self.norm = nn.LayerNorm(embed_dim)

    def _tokens(self, x):
        patches = self.proj(x).flatten(2).transpose(1, 2)
        return torch.cat([patches.mean(1, keepdim=True), patches], dim=1)

    def forward_features(self, x):
        prenorm = self._tokens(x)
        normed = self.norm(prenorm)
        return {"x_norm_clstoken": normed[:, 0], "x_storage_tokens": normed[:, 1:1],
                "x_norm_patchtokens": normed[:, 1:], "x_prenorm": prenorm}

    def get_intermediate_layers(self, x, n=1, reshape=False, return_class_token=False,
                                return_extra_tokens=False, norm=True):
        tokens = self._tokens(x)
        tokens = self.norm(tokens) if norm else tokens
        patches = tokens[:, 1:]
        if reshape:
            patches = patches.transpose(1, 2).reshape(x.shape[0], -1, x.shape[-2] // 4, x.shape[-1] // 4)
        return (patches,)


def test_level_info_derives_levels_for_backbones_without_feature_info():
    model = ThirdPartyViT()
    assert n_levels(model) == 1
    assert level_info(model) == [{"index": 0, "module": "", "num_chs": 12, "reduction": 4}]
    check_backbone(model, "third", torch.randn(2, 3, 8, 12))
    model.embed_dims = [12]  # multi-width backbones may list their widths instead
    assert level_info(model, [-1])[0]["num_chs"] == 12


class _Broken(ThirdPartyViT):
    def __init__(self, what: str) -> None:
        super().__init__()
        self.what = what
        if what == "bad_feature_info":
            self.feature_info = [{"index": 0, "module": "proj", "num_chs": 99, "reduction": 4}]
        if what == "unknown_module":
            self.feature_info = [{"index": 0, "module": "blocks.0", "num_chs": 12, "reduction": 4}]
        if what == "bad_dim":
            self.embed_dim = 12.0

    def forward_features(self, x):
        out = super().forward_features(x)
        if self.what == "keys":
            out.pop("x_prenorm")
        if self.what == "shape":
            out["x_norm_patchtokens"] = out["x_norm_patchtokens"][:, :1]
        if self.what == "raises":
            raise RuntimeError("boom\nsecond line")
        return out


@pytest.mark.parametrize("what,message", [
    ("keys", r"forward_features must return a dict with .*x_prenorm"),
    ("shape", r"x_norm_patchtokens of shape \(2, 1, 12\), expected \(2, 6, 12\)"),
    ("raises", r"forward_features\(<\(2, 3, 8, 12\) images>\) raised RuntimeError: boom$"),
    ("bad_feature_info", r"the last level has 99 channels but embed_dim is 12"),
    ("unknown_module", r"feature_info\[0\] names module 'blocks.0', which the model does not have"),
    ("bad_dim", r"embed_dim must be an int >= 1, got 12.0"),
])
def test_check_backbone_names_what_is_wrong_in_one_line(what, message):
    with pytest.raises(PluginError, match=message) as err:
        check_backbone(_Broken(what), "brk", torch.randn(2, 3, 8, 12))
    assert str(err.value).startswith("backbone 'brk' does not honour the backbone contract: ")
    assert "\n" not in str(err.value)


def test_check_backbone_rejects_non_modules_and_missing_attributes():
    with pytest.raises(PluginError, match="returned a dict, not a torch.nn.Module"):
        check_backbone({}, "d")
    with pytest.raises(PluginError, match=r"missing attribute\(s\) embed_dim, patch_size, n_storage_tokens"):
        check_backbone(nn.Linear(2, 2), "lin")


# ----------------------------------------------------------------------------- a broken plugin, in-process
class _NoContract(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed_dim = 8


def _raising_factory(**_):
    raise RuntimeError("CUDA is required\n(traceback details)")


class BrokenBackbonePlugin:
    """Registers one broken backbone per way a plugin can get a factory wrong (and a working one)."""

    @hookimpl
    def dinobench_register_backbones(self, registry):
        registry.add("broken_raises", _raising_factory, family="broken")
        registry.add("broken_not_module", lambda **_: {"weights": 1}, family="broken")
        registry.add("broken_no_contract", _NoContract, family="broken")
        registry.add("broken_import", "no_such_module_for_dinobench_tests:build", family="broken")
        registry.add("working_third_party", ThirdPartyViT, family="broken")


@pytest.fixture
def broken_plugin():
    with registered(BrokenBackbonePlugin(), "broken-plugin") as plugin:
        yield plugin


@pytest.mark.parametrize("name,message", [
    ("broken_raises", r"its factory raised RuntimeError: CUDA is required$"),
    ("broken_not_module", r"its factory returned a dict, not a torch.nn.Module$"),
    ("broken_no_contract", r"missing attribute\(s\) patch_size, n_storage_tokens, forward_features"),
    ("broken_import", r"cannot import its factory 'no_such_module_for_dinobench_tests:build': ModuleNotFoundError"),
])
def test_broken_plugin_backbone_is_one_line_naming_backbone_and_plugin(broken_plugin, name, message):
    with pytest.raises(PluginError, match=message) as err:
        dinobench.create_backbone(name)
    text = str(err.value)
    assert f"backbone {name!r}" in text and "plugin 'broken-plugin'" in text and "\n" not in text


def test_broken_plugin_backbone_through_the_cli_is_one_line(broken_plugin, run_cli, tmp_path):
    code, _, err = run_cli("run", "--backbone", "broken_raises", "--task", "digits-knn", "--output", str(tmp_path))
    assert code == 2
    assert err.strip().count("\n") == 0 and "broken_raises" in err and "broken-plugin" in err
    assert "Traceback" not in err


def test_working_third_party_backbone_and_its_bad_overrides(broken_plugin):
    model = dinobench.create_backbone("working_third_party", embed_dim=16)
    assert model.embed_dim == 16 and level_info(model)[0]["num_chs"] == 16
    with pytest.raises(ConfigError, match=r"backbone 'working_third_party': invalid override \(backbone.depth=3\)"):
        dinobench.create_backbone("working_third_party", depth=3)


# ----------------------------------------------------------------------------- one-line config errors
def test_bad_first_party_overrides_name_the_key_and_the_valid_values():
    with pytest.raises(ConfigError, match=r"invalid override backbone.embedding_dim: .*did you mean 'embed_dim'\?"):
        dinobench.create_backbone("vits16", embedding_dim=64)
    with pytest.raises(ConfigError, match=r"invalid override \(backbone.ffn_layer='swiglu7', .*\): "
                                          r"ValueError: unknown ffn_layer 'swiglu7'; expected one of .*'swiglu64'"):
        dinobench.create_backbone("vits16", ffn_layer="swiglu7", **tiny_overrides("vits16"))
    with pytest.raises(ConfigError, match=r"backbone.num_heads=5.*not divisible"):
        dinobench.create_backbone("dinov2_vits14", embed_dim=32, depth=1, num_heads=5)
    with pytest.raises(ConfigError, match=r"ConvNeXt has 4 stages"):
        dinobench.create_backbone("convnext_tiny", depths=[1, 1])
    with pytest.raises(ConfigError, match=r"n_blocks must be an int >= 1, got 0: invalid override \(backbone.depth=0"):
        dinobench.create_backbone("vits16", depth=0, embed_dim=32, num_heads=2)
    with pytest.raises(ConfigError, match=r"^backbone 'convnext_tiny': invalid override backbone.dim: .*'dims'\?"):
        dinobench.create_backbone("convnext_tiny", dim=[8, 16, 24, 32])


def test_unsupported_hf_config_is_a_weights_error(tmp_path, tiny):
    folder = export_hf(tiny("vits16"), tmp_path / "hf")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "layer_norm_eps": 1e-3}))
    with pytest.raises(WeightsError, match=r"config.json does not describe a supported dinov3_vit model: "
                                           r"ValueError: unsupported layer_norm_eps 0.001"):
        dinobench.backbones.from_pretrained(folder)


def test_transform_and_depth_head_config_errors_are_one_line():
    mean, std = (0.5,) * 3, (0.2,) * 3
    with pytest.raises(ConfigError, match=r"^transform.interpolation: 'lanczos' is not one of bicubic, bilinear, "
                                          r"nearest$"):
        build_eval_transform({"resize": 16, "interpolation": "lanczos"}, mean, std)
    with pytest.raises(ConfigError, match=r"^transform.crop: 'big' is not a positive whole number of pixels$"):
        build_eval_transform({"crop": "big"}, mean, std)
    with pytest.raises(ConfigError, match=r"^transform.crop: the train augmentation needs the crop size"):
        build_train_transform({"interpolation": "bilinear"}, mean, std)
    # uint8 tensor, resize, float, norm (the official v2 pipeline); crop 0 = no crop step
    assert len(build_eval_transform({"resize": 16.0, "crop": 0}, mean, std).transforms) == 4
    with pytest.raises(ConfigError, match=r"^protocol.head.bins_strategy: 'cubic' is not one of linear, log, "
                                          r"chmv2_mixlog$"):
        BinsToDepth(bins_strategy="cubic")
    with pytest.raises(ConfigError, match=r"^protocol.head.norm_strategy: 'relu' is not one of linear, softmax, "
                                          r"sigmoid, chmv2_mixlog$"):
        BinsToDepth(norm_strategy="relu")
    with pytest.raises(ConfigError, match=r"^protocol.head.bins_strategy: 'exp'"):
        depth_bins(0.1, 10.0, 4, strategy="exp")
    assert issubclass(ConfigError, DinobenchError)
