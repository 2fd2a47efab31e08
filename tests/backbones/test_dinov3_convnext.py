"""DINOv3 ConvNeXt family: numerical parity with transformers' DINOv3ConvNextModel, HF export,
official-format round trip, official sizes and the backbone contract."""

import json

import pytest
import torch
from safetensors.torch import save_file
from transformers import DINOv3ConvNextConfig, DINOv3ConvNextModel

import dinobench
from dinobench.backbones import dinov3_convnext as cnx
from dinobench.backbones.factory import count_parameters
from dinobench.backbones.variants import DINOV3_CONVNEXT

TINY = {"depths": [1, 1, 2, 1], "dims": [16, 32, 64, 128]}
SIZES = [(224, 224), (256, 320), (200, 232)]  # the last is not a multiple of 32 (grid 6x7)
TOL = 1e-4


def _perturb(model: torch.nn.Module, seed: int, gamma: float) -> None:
    """Make every parameter matter: random norms/biases, LayerScale ~U(0, gamma) instead of 1e-6."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.copy_(torch.rand(p.shape, generator=gen) * gamma)
            else:
                p.add_(torch.randn(p.shape, generator=gen) * 0.1)


def _hf_pair(depths, dims, seed=0, gamma=1.0):
    """Random transformers model and a dinobench model loaded (strictly) from its converted state."""
    torch.manual_seed(seed)
    hf = DINOv3ConvNextModel(DINOv3ConvNextConfig(depths=depths, hidden_sizes=dims)).eval()
    _perturb(hf, seed, gamma)
    state = hf.state_dict()
    assert cnx.detect_format(state) == "hf"
    ours = cnx.build(None, **cnx.kwargs_from_hf_config(hf.config.to_dict())).eval()
    ours.load_state_dict(cnx.convert_state_dict(state, "hf"), strict=True)
    return hf, ours


def _maxdiff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


@pytest.fixture(scope="module")
def pair():
    return _hf_pair(TINY["depths"], TINY["dims"])


@pytest.mark.parametrize("hw", SIZES, ids=lambda hw: f"{hw[0]}x{hw[1]}")
def test_forward_features_match_transformers(pair, hw):
    hf, ours = pair
    x = torch.randn(2, 3, *hw, generator=torch.Generator().manual_seed(hw[0] + hw[1]))
    with torch.no_grad():
        ref = hf(x, output_hidden_states=True)
        out = ours.forward_features(x)
    grid = (hw[0] // 32) * (hw[1] // 32)  # convolutions floor: 200x232 -> 50x58 -> 25x29 -> 12x14 -> 6x7
    assert out["x_norm_patchtokens"].shape == (2, grid, 128)
    # HF last_hidden_state = LayerNorm([pooled, map tokens]) [B, 1+N, C]; pooler_output is its row 0
    d_cls = _maxdiff(out["x_norm_clstoken"], ref.pooler_output)
    d_patch = _maxdiff(out["x_norm_patchtokens"], ref.last_hidden_state[:, 1:])
    last_map = ref.hidden_states[-1]  # pre-norm last stage map [B, C, h, w]
    prenorm = torch.cat([last_map.mean((2, 3))[:, None], last_map.flatten(2).transpose(1, 2)], dim=1)
    d_pre = _maxdiff(out["x_prenorm"], prenorm)
    print(f"\n[convnext tiny-dims {hw[0]}x{hw[1]}] max|diff| cls={d_cls:.2e} patch={d_patch:.2e} prenorm={d_pre:.2e}")
    assert max(d_cls, d_patch, d_pre) <= TOL
    assert ref.last_hidden_state.abs().max() > 0.5  # outputs are not degenerate
    assert out["x_storage_tokens"].shape == (2, 0, 128)


def test_intermediate_layers_match_transformers_hidden_states(pair):
    hf, ours = pair
    x = torch.randn(2, 3, 200, 232, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = hf(x, output_hidden_states=True)
        last4 = ours.get_intermediate_layers(x, n=4, return_class_token=True)
        last1 = ours.get_intermediate_layers(x, n=1, return_class_token=True)
        picked = ours.get_intermediate_layers(x, n=[0, 2], reshape=True, return_class_token=True)
        raw = ours.get_intermediate_layers(x, n=4, norm=False, reshape=True)
    # HF hidden_states = (pixel_values, stage 0 map, ..., stage 3 map), all pre-norm NCHW
    assert len(ref.hidden_states) == 5 and torch.equal(ref.hidden_states[0], x)
    maps = ref.hidden_states[1:]
    diffs = []
    for i, (patches, cls) in enumerate(last4):  # norms: identity for stages 0-2, final LayerNorm for 3
        if i < 3:
            diffs += [_maxdiff(patches, maps[i].flatten(2).transpose(1, 2)), _maxdiff(cls, maps[i].mean((2, 3)))]
        else:
            diffs += [_maxdiff(patches, ref.last_hidden_state[:, 1:]), _maxdiff(cls, ref.pooler_output)]
    diffs += [_maxdiff(last1[0][0], ref.last_hidden_state[:, 1:]), _maxdiff(last1[0][1], ref.pooler_output)]
    for (patches, cls), i in zip(picked, [0, 2]):
        diffs += [_maxdiff(patches, maps[i]), _maxdiff(cls, maps[i].mean((2, 3)))]
    diffs += [_maxdiff(r, m) for r, m in zip(raw, maps)]
    print(f"\n[convnext intermediate layers] max|diff| = {max(diffs):.2e}")
    assert max(diffs) <= TOL
    assert [p.shape[-1] for p in ours.get_intermediate_layers(x, n=4)] == TINY["dims"]
    with pytest.raises(ValueError, match="blocks"):
        ours.get_intermediate_layers(x, n=5)


def test_full_size_convnext_tiny_matches_transformers_at_224():
    hf, ours = _hf_pair([3, 3, 9, 3], [96, 192, 384, 768], seed=1, gamma=0.3)
    assert ours.variant_config["dims"] == DINOV3_CONVNEXT["convnext_tiny"][0]["dims"]
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = hf(x)
        out = ours.forward_features(x)
    d_cls = _maxdiff(out["x_norm_clstoken"], ref.pooler_output)
    d_patch = _maxdiff(out["x_norm_patchtokens"], ref.last_hidden_state[:, 1:])
    print(f"\n[convnext_tiny full size 224x224] max|diff| cls={d_cls:.2e} patch={d_patch:.2e}")
    assert max(d_cls, d_patch) <= TOL


def test_export_hf_round_trip_through_from_pretrained(tmp_path):
    torch.manual_seed(3)
    ours = cnx.build(None, **TINY).eval()
    _perturb(ours, 3, 1.0)
    config, state = cnx.export_hf(ours)
    assert config["model_type"] == "dinov3_convnext" and config["architectures"] == ["DINOv3ConvNextModel"]
    assert not any(k.startswith("norms.") for k in state)
    (tmp_path / "config.json").write_text(json.dumps(config))
    save_file(state, str(tmp_path / "model.safetensors"))
    hf = DINOv3ConvNextModel.from_pretrained(str(tmp_path)).eval()
    for name, tensor in hf.state_dict().items():  # every tensor came from the file (no fresh init)
        ours_name = name.removeprefix("model.")
        assert torch.equal(tensor, state[ours_name]), name
    x = torch.randn(2, 3, 200, 232, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        ref, out = hf(x), ours.forward_features(x)
    d = max(_maxdiff(out["x_norm_clstoken"], ref.pooler_output),
            _maxdiff(out["x_norm_patchtokens"], ref.last_hidden_state[:, 1:]))
    print(f"\n[convnext export round trip 200x232] max|diff| = {d:.2e}")
    assert d <= TOL
    # and back: config.json -> kwargs, HF state -> ours, bit-identical
    back = cnx.build(None, **cnx.kwargs_from_hf_config(json.loads((tmp_path / "config.json").read_text())))
    back.load_state_dict(cnx.convert_state_dict(hf.state_dict(), "hf"), strict=True)
    for name, tensor in ours.state_dict().items():
        assert torch.equal(tensor, back.state_dict()[name]), name


def test_official_pth_round_trip_is_bit_identical(tmp_path):
    torch.manual_seed(5)
    model = cnx.build("convnext_tiny", **TINY)
    state = model.state_dict()
    for key in ("downsample_layers.0.0.weight", "downsample_layers.0.1.bias", "downsample_layers.3.1.weight",
                "stages.2.1.dwconv.weight", "stages.0.0.norm.weight", "stages.0.0.pwconv1.weight",
                "stages.3.0.pwconv2.bias", "stages.1.0.gamma", "norm.weight", "norms.3.weight", "norms.3.bias"):
        assert key in state, key
    assert cnx.detect_format(state) == "official" and cnx.convert_state_dict(state, "official") == state
    torch.save(state, tmp_path / "a.pth")
    loaded = torch.load(tmp_path / "a.pth", weights_only=True)
    with torch.device("meta"):
        fresh = cnx.build("convnext_tiny", **TINY)
    fresh.load_state_dict(loaded, strict=True, assign=True)
    torch.save(fresh.state_dict(), tmp_path / "b.pth")
    again = torch.load(tmp_path / "b.pth", weights_only=True)
    assert list(again) == list(state)
    for key, tensor in state.items():
        assert torch.equal(again[key], tensor), key
    assert fresh.norms[3] is fresh.norm


def test_detect_and_convert_formats():
    hf_state = DINOv3ConvNextModel(DINOv3ConvNextConfig(depths=[1, 1, 1, 1], hidden_sizes=[8, 8, 8, 8])).state_dict()
    assert any(k.startswith("model.stages.") for k in hf_state)  # transformers >= 5 layout
    hub_state = {k.removeprefix("model."): v for k, v in hf_state.items()}  # layout of the Hub files
    assert cnx.detect_format(hub_state) == "hf"
    assert cnx.convert_state_dict(hub_state, "hf").keys() == cnx.convert_state_dict(hf_state, "hf").keys()
    assert cnx.detect_format({"cls_token": torch.zeros(1), "blocks.0.attn.qkv.weight": torch.zeros(1)}) is None
    with pytest.raises(ValueError, match="unexpected key"):
        cnx.convert_state_dict({**hub_state, "classifier.weight": torch.zeros(1)}, "hf")
    with pytest.raises(ValueError, match="format"):
        cnx.convert_state_dict(hub_state, "onnx")
    with pytest.raises(ValueError, match="unexpected key .* in a timm ConvNeXt state dict"):
        cnx.convert_state_dict(hub_state, "timm")  # HF names are not timm names
    with pytest.raises(ValueError, match="layer_norm_eps"):
        cnx.kwargs_from_hf_config({"model_type": "dinov3_convnext", "layer_norm_eps": 1e-5})


def test_variants_and_published_parameter_counts():
    # The DINOv3 README lists 29M / 50M / 89M / 198M: the original ConvNeXt counts, which include
    # a 1000-class linear head. The backbones themselves (official architecture, no head) have:
    exact = {"convnext_tiny": 27_820_128, "convnext_small": 49_454_688,
             "convnext_base": 87_566_464, "convnext_large": 196_230_336}
    published = {"convnext_tiny": 29e6, "convnext_small": 50e6, "convnext_base": 89e6, "convnext_large": 198e6}
    for name, (kwargs, meta) in DINOV3_CONVNEXT.items():
        count = count_parameters(name)  # built on the meta device
        head = kwargs["dims"][-1] * 1000 + 1000
        print(f"\n[{name}] {count:,} parameters (+ IN-1k head: {(count + head) / 1e6:.2f}M)")
        assert count == exact[name]
        assert round((count + head) / 1e6) == published[name] / 1e6
        assert abs(count + head - published[name]) / published[name] < 0.015
        assert meta["patch_size"] == 32 and meta["embed_dim"] == kwargs["dims"][-1]
    assert set(exact) == set(DINOV3_CONVNEXT)
    assert DINOV3_CONVNEXT["convnext_tiny"][0]["depths"] == [3, 3, 9, 3]
    assert DINOV3_CONVNEXT["convnext_base"][0]["dims"] == [128, 256, 512, 1024]


def test_meta_build_allocates_nothing_and_init_is_official():
    with torch.device("meta"):
        big = cnx.convnext_large()
    assert all(t.is_meta for t in [*big.parameters(), *big.buffers()])
    assert big.embed_dim == 1536 and big.variant_config["depths"] == [3, 3, 27, 3]
    torch.manual_seed(0)
    m = cnx.build("convnext_tiny", **TINY, drop_path_rate=0.3)
    assert torch.equal(m.stages[1][0].gamma, torch.full((32,), 1e-6))
    assert torch.equal(m.downsample_layers[1][0].weight, torch.ones(16)) and m.norm.eps == 1e-6
    assert m.stages[0][0].norm.eps == 1e-6 and m.downsample_layers[0][1].eps == 1e-6
    assert torch.equal(m.stages[0][0].pwconv1.bias, torch.zeros(64))
    w = m.stages[2][0].pwconv1.weight
    assert 0.015 < w.std().item() < 0.025 and w.abs().max().item() <= 2.0
    assert m.stages[0][0].drop_path_rate == 0.0 and m.stages[3][0].drop_path_rate == pytest.approx(0.3)
    torch.manual_seed(0)
    again = cnx.build("convnext_tiny", **TINY, drop_path_rate=0.3)
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), again.state_dict().values()))


def test_backbone_contract_via_create_backbone():
    torch.manual_seed(0)
    m = dinobench.create_backbone("convnext_small", **TINY)
    assert (m.embed_dim, m.patch_size, m.n_storage_tokens) == (128, 32, 0)
    assert m.image_mean == (0.485, 0.456, 0.406) and m.image_std == (0.229, 0.224, 0.225)
    assert m.variant_config == {**DINOV3_CONVNEXT["convnext_small"][0], **TINY}
    x = torch.randn(2, 3, 96, 70)
    with torch.no_grad():
        out = m.forward_features(x)
        normed = m.norm(out["x_prenorm"])
        torch.testing.assert_close(out["x_norm_clstoken"], normed[:, 0])
        torch.testing.assert_close(out["x_norm_patchtokens"], normed[:, 1:])
        assert out["x_norm_patchtokens"].shape == (2, 3 * 2, 128)
        torch.testing.assert_close(m(x), out["x_norm_clstoken"])
        ((patches, cls, extra),) = m.get_intermediate_layers(
            x, n=1, reshape=True, return_class_token=True, return_extra_tokens=True)
        assert patches.shape == (2, 128, 3, 2) and extra.shape == (2, 0, 128)
        torch.testing.assert_close(patches.flatten(2).transpose(1, 2), out["x_norm_patchtokens"])
        torch.testing.assert_close(cls, out["x_norm_clstoken"])
        both = m.forward_features([x, x[:1]])
        torch.testing.assert_close(both[1]["x_norm_clstoken"], out["x_norm_clstoken"][:1])
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        m.forward_features(torch.randn(3, 64, 64))
    with pytest.raises(ValueError, match="smaller than the total stride"):
        m.forward_features(torch.randn(1, 3, 31, 64))


def test_official_patch_size_option_resizes_intermediate_maps():
    torch.manual_seed(0)
    m = cnx.build("convnext_tiny", **TINY, patch_size=16).eval()
    plain = cnx.build("convnext_tiny", **TINY).eval()
    plain.load_state_dict(m.state_dict())
    x = torch.randn(1, 3, 200, 232)
    with torch.no_grad():
        resized = m.get_intermediate_layers(x, n=4, reshape=True, return_class_token=True)
        native = plain.get_intermediate_layers(x, n=4, reshape=True, return_class_token=True)
    assert [p.shape[-2:] for p, _ in resized] == [(12, 14)] * 4  # 200 // 16, 232 // 16
    assert [p.shape[-2:] for p, _ in native] == [(50, 58), (25, 29), (12, 14), (6, 7)]
    for (_, a), (_, b) in zip(resized, native):  # pooled tokens come from the native maps
        torch.testing.assert_close(a, b)
    assert m.patch_size == 32  # the contract attribute stays the token stride of forward_features


def test_create_backbone_loads_official_pth_and_hf_directory(tmp_path):
    """Through the public loader: official .pth (with the shared final norm) and an HF folder."""
    import dinobench
    from dinobench.backbones.export import export_hf, export_pth

    torch.manual_seed(0)
    source = dinobench.create_backbone("convnext_tiny", depths=[1, 1, 1, 1], dims=[16, 32, 64, 128])
    export_pth(source, tmp_path / "official.pth")
    assert "norms.3.weight" in torch.load(tmp_path / "official.pth", weights_only=True)
    from_pth = dinobench.create_backbone("convnext_tiny", weights=str(tmp_path / "official.pth"),
                                         depths=[1, 1, 1, 1], dims=[16, 32, 64, 128])
    export_hf(source, tmp_path / "hf")
    from_hf = dinobench.create_backbone("hf", weights=str(tmp_path / "hf"))
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        ref = source.forward_features(x)
        for model in (from_pth, from_hf):
            out = model.forward_features(x)
            assert (out["x_norm_clstoken"] - ref["x_norm_clstoken"]).abs().max() <= 1e-5
            assert (out["x_norm_patchtokens"] - ref["x_norm_patchtokens"]).abs().max() <= 1e-5


def test_timm_convnext_state_dict_parity(tmp_path):
    """timm's ``convnext_*`` (the ``.dinov3_lvd1689m`` weights use it) -> dinobench through create_backbone."""
    import timm

    import dinobench

    depths, dims = [1, 1, 2, 1], [16, 32, 64, 128]
    peer = timm.create_model("convnext_tiny", pretrained=False, depths=depths, dims=dims).eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in peer.named_parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * (0.3 if "gamma" in name or "norm" in name else 0.05)
                    + (1.0 if name.endswith("norm.weight") else 0.0))
    torch.save(peer.state_dict(), tmp_path / "timm.pth")
    ours = dinobench.create_backbone("convnext_tiny", weights=str(tmp_path / "timm.pth"), depths=depths, dims=dims)
    for h, w in [(224, 224), (256, 320), (200, 232)]:
        x = torch.randn(2, 3, h, w)
        with torch.no_grad():
            fmap = peer.forward_features(x)  # [B, C, h, w], before timm's head norm
            pooled = peer.forward_head(fmap, pre_logits=True)  # head norm of the global average
            tokens = torch.nn.functional.layer_norm(fmap.flatten(2).transpose(1, 2), (128,),
                                                    peer.head.norm.weight, peer.head.norm.bias, peer.head.norm.eps)
            out = ours.forward_features(x)
        diffs = [(out["x_norm_clstoken"] - pooled).abs().max().item(),
                 (out["x_norm_patchtokens"] - tokens).abs().max().item()]
        print(f"timm convnext {h}x{w}: max abs diff cls/patch {diffs}")
        assert max(diffs) <= 1e-4, diffs
