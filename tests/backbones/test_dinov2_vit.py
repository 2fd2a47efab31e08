"""DINOv2 ViT family: official behaviour, peer parity (transformers, timm), formats and exports.

Position-embedding resizing is where the implementations differ (DINOv2 pre-trains on a
518 px / 37x37 grid and resizes it bicubically to other inputs):

- official, original models: ``scale_factor=(grid + 0.1) / 37`` (which also sets the sampling
  positions), no antialias; official register models: ``size=grid`` with antialias.
- transformers ``Dinov2Model``: ``size=grid``, no antialias -> agrees with the official model
  only at 518x518; equals our model built with ``interpolate_offset=0``.
- transformers ``Dinov2WithRegistersModel``: ``size=grid`` with antialias -> official everywhere.
- timm ``vit_*_patch14_dinov2``: ``size=grid`` with antialias -> agrees only at 518x518; equals
  our model built with ``interpolate_offset=0, interpolate_antialias=True``.
- timm ``vit_*_patch14_reg4_dinov2``: official everywhere.

Where a peer differs, parity is tested at 518x518 with the official settings and at the other
sizes against our model built with the peer's resizing settings (same weights); the size of the
difference is printed and asserted, so a peer that changes its resizing is noticed.
The official behaviour itself is pinned by values computed with the official code (golden test).
Inputs whose sides are not multiples of 14: we crop to the nearest smaller multiple, transformers
silently does the same (strided conv + ``size // 14``), timm raises, so timm gets the cropped image.
"""

from __future__ import annotations

import json
import math

import pytest
import timm
import torch
from safetensors.torch import save_file
from transformers import Dinov2Config, Dinov2Model, Dinov2WithRegistersConfig, Dinov2WithRegistersModel

import dinobench
from dinobench.backbones import dinov2_vit
from dinobench.backbones.loading import read_state_dict
from dinobench.backbones.variants import DINOV2_VIT

TINY = {"embed_dim": 64, "depth": 4, "num_heads": 2}
SIZES = [(224, 224), (252, 308), (230, 200), (518, 518)]  # 518: the pre-training grid (no resizing)
TOL = 1e-4
HF_RESIZE = {"interpolate_offset": 0.0, "interpolate_antialias": False}  # Dinov2Model
TIMM_RESIZE = {"interpolate_offset": 0.0, "interpolate_antialias": True}  # vit_*_patch14_dinov2


def _perturb(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random offsets on every tensor (LayerScale 1e-5 and zero biases would hide mistakes)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return module.eval()


def _crop(x: torch.Tensor) -> torch.Tensor:
    return x[..., : x.shape[-2] // 14 * 14, : x.shape[-1] // 14 * 14]


def _tokens(out: dict) -> dict[str, torch.Tensor]:
    return {"cls": out["x_norm_clstoken"], "reg": out["x_storage_tokens"], "patch": out["x_norm_patchtokens"]}


def _split(seq: torch.Tensor, n_reg: int) -> dict[str, torch.Tensor]:
    return {"cls": seq[:, 0], "reg": seq[:, 1 : 1 + n_reg], "patch": seq[:, 1 + n_reg :]}


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert all(a[k].shape == b[k].shape for k in a)
    return max((a[k] - b[k]).abs().max().item() if a[k].numel() else 0.0 for k in a)


# ----------------------------------------------------------------------------- peers
def _hf_peer(registers: bool, swiglu: bool, seed: int) -> tuple[torch.nn.Module, callable]:
    common = dict(hidden_size=64, num_hidden_layers=4, num_attention_heads=2, image_size=518, patch_size=14,
                  layerscale_value=1e-5, use_swiglu_ffn=swiglu)
    model = (Dinov2WithRegistersModel(Dinov2WithRegistersConfig(num_register_tokens=4, **common)) if registers
             else Dinov2Model(Dinov2Config(**common)))
    return _perturb(model, seed), lambda m, x: m(pixel_values=x).last_hidden_state


def _timm_peer(registers: bool, swiglu: bool, seed: int) -> tuple[torch.nn.Module, callable]:
    name = f"vit_{'giant' if swiglu else 'small'}_patch14_{'reg4_' if registers else ''}dinov2"
    extra = {"mlp_ratio": 5.5} if swiglu else {}  # SwiGLUPacked width 2 * 176 = official w12 of dim 64
    model = timm.create_model(name, pretrained=False, img_size=518, num_classes=0, dynamic_img_size=True,
                              embed_dim=64, depth=4, num_heads=2, **extra)
    return _perturb(model, seed), lambda m, x: m.forward_features(_crop(x))  # timm asserts multiples of 14


# (peer, registers, swiglu, resize overrides matching the peer away from 518 px or None if official)
PEERS = [
    ("hf", False, False, HF_RESIZE),
    ("hf", True, False, None),
    ("hf", True, True, None),
    ("timm", False, False, TIMM_RESIZE),
    ("timm", True, False, None),
    ("timm", False, True, TIMM_RESIZE),
]


@pytest.mark.parametrize("peer,registers,swiglu,peer_resize", PEERS,
                         ids=["hf", "hf_reg", "hf_reg_swiglu", "timm", "timm_reg4", "timm_giant"])
def test_peer_parity(peer, registers, swiglu, peer_resize):
    model, run = (_hf_peer if peer == "hf" else _timm_peer)(registers, swiglu, seed=len(peer) + registers + 2 * swiglu)
    state = model.state_dict()
    assert dinov2_vit.detect_format(state) == peer
    variant = f"dinov2_vit{'g' if swiglu else 's'}14{'_reg' if registers else ''}"
    kwargs = (dinov2_vit.kwargs_from_hf_config(model.config.to_dict()) if peer == "hf"
              else {**DINOV2_VIT[variant][0], **TINY})
    assert kwargs["ffn_layer"] == ("swiglufused" if swiglu else "mlp")
    ours = dinov2_vit.build(None, **kwargs).eval()
    converted = dinov2_vit.convert_state_dict(state, peer)
    ours.load_state_dict(converted, strict=True)
    as_peer = dinov2_vit.build(None, **{**kwargs, **(peer_resize or {})}).eval()
    as_peer.load_state_dict(converted, strict=True)
    n_reg = 4 if registers else 0
    torch.manual_seed(0)
    for size in SIZES:
        x = torch.randn(2, 3, *size)
        with torch.no_grad():
            theirs = _split(run(model, x), n_reg)
            official = _tokens(ours.forward_features(x))
            matched = _tokens(as_peer.forward_features(x))
        d_official, d_matched = _max_diff(official, theirs), _max_diff(matched, theirs)
        print(f"\n{peer} reg={registers} swiglu={swiglu} {size}: official {d_official:.2e}, "
              f"with the peer's resizing {d_matched:.2e}")
        assert d_matched <= TOL
        if peer_resize is None or size == (518, 518):
            assert d_official <= TOL
        else:  # documented difference: the peer does not resize the position embedding as official
            assert d_official > 1e-3


def test_get_intermediate_layers_match_hf_hidden_states():
    for registers in (False, True):
        model, _ = _hf_peer(registers, swiglu=False, seed=7)
        ours = dinov2_vit.build(None, **dinov2_vit.kwargs_from_hf_config(model.config.to_dict())).eval()
        ours.load_state_dict(dinov2_vit.convert_state_dict(model.state_dict(), "hf"), strict=True)
        n_reg = 4 if registers else 0
        x = torch.randn(2, 3, 518, 518) if not registers else torch.randn(2, 3, 252, 308)
        with torch.no_grad():
            hidden = model(pixel_values=x, output_hidden_states=True).hidden_states[1:]  # after each block
            for n, blocks in ((1, [3]), (4, [0, 1, 2, 3]), ([0, 2, -1], [0, 2, 3])):
                outs = ours.get_intermediate_layers(x, n=n, return_class_token=True, return_extra_tokens=True)
                raw = ours.get_intermediate_layers(x, n=n, norm=False)
                assert len(outs) == len(blocks) == len(raw)
                for (patches, cls, regs), prenorm, b in zip(outs, raw, blocks):
                    ref = _split(model.layernorm(hidden[b]), n_reg)
                    diff = _max_diff({"cls": cls, "reg": regs, "patch": patches}, ref)
                    diff_raw = (prenorm - hidden[b][:, 1 + n_reg :]).abs().max().item()
                    print(f"\nintermediate reg={registers} n={n} block {b}: {diff:.2e} (prenorm {diff_raw:.2e})")
                    assert diff <= TOL and diff_raw <= TOL
            ((grid, _),) = ours.get_intermediate_layers(x, n=1, reshape=True, return_class_token=True)
            assert grid.shape == (2, 64, x.shape[-2] // 14, x.shape[-1] // 14)
            torch.testing.assert_close(grid.flatten(2).transpose(1, 2), outs[-1][0])


def test_full_size_vits14_parity_at_224():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 224, 224)
    # transformers at its own 224 px grid vs dinov2_vits14 with a 224 px grid: no resizing on either side
    hf = _perturb(Dinov2Model(Dinov2Config(hidden_size=384, num_hidden_layers=12, num_attention_heads=6,
                                           image_size=224, patch_size=14, layerscale_value=1e-5)), seed=3)
    ours = dinov2_vit.dinov2_vits14(img_size=224).eval()
    ours.load_state_dict(dinov2_vit.convert_state_dict(hf.state_dict(), "hf"), strict=True)
    # timm reg4 with the official 518 px grid vs dinov2_vits14_reg as released: both resize 37x37 -> 16x16
    tm = _perturb(timm.create_model("vit_small_patch14_reg4_dinov2", pretrained=False, img_size=518,
                                    num_classes=0, dynamic_img_size=True), seed=4)
    ours_reg = dinov2_vit.dinov2_vits14_reg().eval()
    ours_reg.load_state_dict(dinov2_vit.convert_state_dict(tm.state_dict(), "timm"), strict=True)
    with torch.no_grad():
        d_hf = _max_diff(_tokens(ours.forward_features(x)), _split(hf(pixel_values=x).last_hidden_state, 0))
        d_timm = _max_diff(_tokens(ours_reg.forward_features(x)), _split(tm.forward_features(x), 4))
    print(f"\nfull-size ViT-S/14 at 224: transformers {d_hf:.2e}, timm reg4 {d_timm:.2e}")
    assert d_hf <= TOL and d_timm <= TOL


# ----------------------------------------------------------------------------- official behaviour
# interpolate_pos_encoding of the official dinov2 code (facebookresearch/dinov2) on the
# deterministic 37x37 table below, dim 4: sum over patches, and the patch at row 5, column 7.
# Keys: (interpolate_offset, interpolate_antialias, input size); original and register settings.
GOLDEN = {
    (0.1, False, (224, 224)): ([21.774443, 20.817177, 19.815857, 18.808569],
                               [-1.454594, -1.464777, -1.345846, -1.117345]),
    (0.1, False, (252, 308)): ([10.24891, 10.864696, 11.432403, 11.974292],
                               [-0.287397, 0.070162, 0.373923, 0.585301]),
    (0.0, True, (224, 224)): ([10.757898, 10.605456, 10.430902, 10.246659],
                              [-0.028652, -0.035877, -0.034313, -0.025402]),
    (0.0, True, (252, 308)): ([16.819077, 16.570097, 16.283466, 15.980824],
                              [-0.127686, -0.049851, 0.015419, 0.059364]),
}


@pytest.mark.parametrize("offset,antialias,size", list(GOLDEN))
def test_position_embedding_resizing_matches_official_values(offset, antialias, size):
    model = dinov2_vit.build(None, img_size=518, patch_size=14, embed_dim=4, depth=1, num_heads=1,
                             interpolate_offset=offset, interpolate_antialias=antialias)
    i = torch.arange(1370 * 4, dtype=torch.float64).reshape(1, 1370, 4)
    with torch.no_grad():
        model.pos_embed.copy_(torch.sin(0.37 * i) + torch.cos(0.011 * i * i / 1369))
        pos = model.interpolate_pos_encoding(torch.zeros(1, 1, 4), *size)
    grid_w = size[1] // 14
    assert pos.shape == (1, 1 + (size[0] // 14) * grid_w, 4)
    total, patch = GOLDEN[(offset, antialias, size)]
    torch.testing.assert_close(pos[0, 1:].sum(0), torch.tensor(total), atol=1e-4, rtol=0)
    torch.testing.assert_close(pos[0, 1 + 5 * grid_w + 7], torch.tensor(patch), atol=1e-5, rtol=0)
    assert torch.equal(pos[0, 0], model.pos_embed[0, 0])  # the class entry is never resized
    assert model.interpolate_pos_encoding(torch.zeros(1, 1, 4), 518, 518) is model.pos_embed


def test_official_pth_round_trip_is_bit_identical(tmp_path):
    torch.manual_seed(0)
    model = _perturb(dinov2_vit.dinov2_vitg14_reg(**TINY), seed=5)
    path = tmp_path / "dinov2_vitg14_reg4_pretrain.pth"
    torch.save(model.state_dict(), path)
    state = read_state_dict(path)
    assert dinov2_vit.detect_format(state) == "official"
    loaded = dinobench.create_backbone("dinov2_vitg14_reg", weights=path, **TINY)
    assert loaded.n_storage_tokens == 4 and loaded.patch_size == 14
    ref, new = model.state_dict(), loaded.state_dict()
    assert list(ref) == list(new) and all(torch.equal(ref[k], new[k]) for k in ref)
    assert "blocks.0.mlp.w12.weight" in new and "register_tokens" in new
    x = torch.randn(1, 3, 98, 70)
    with torch.no_grad():
        assert torch.equal(model.forward_features(x)["x_prenorm"], loaded.forward_features(x)["x_prenorm"])
    # training checkpoints (block_chunks=2) nest blocks as blocks.<chunk>.<index>.
    chunked = {(f"blocks.{int(k.split('.')[1]) // 2}." + k[len("blocks."):] if k.startswith("blocks.") else k): v
               for k, v in ref.items()}
    assert "blocks.1.3.norm1.weight" in chunked
    flat = dinov2_vit.convert_state_dict(chunked, "official")
    assert list(flat) == list(ref) and all(flat[k] is ref[k] for k in ref)


def test_timm_checkpoint_loads_through_create_backbone(tmp_path):
    model, run = _timm_peer(registers=True, swiglu=False, seed=8)
    save_file(model.state_dict(), str(tmp_path / "timm.safetensors"))
    ours = dinobench.create_backbone("dinov2_vits14_reg", weights=tmp_path / "timm.safetensors", **TINY)
    x = torch.randn(1, 3, 126, 98)
    with torch.no_grad():
        diff = _max_diff(_tokens(ours.forward_features(x)), _split(run(model, x), 4))
    assert diff <= TOL


@pytest.mark.parametrize("registers,swiglu", [(False, False), (True, True)])
def test_export_hf_round_trip(tmp_path, caplog, registers, swiglu):
    torch.manual_seed(1)
    variant = f"dinov2_vit{'g' if swiglu else 's'}14{'_reg' if registers else ''}"
    model = _perturb(dinov2_vit.build(variant, **TINY), seed=6)
    with caplog.at_level("WARNING", logger="dinobench"):
        config, state = dinov2_vit.export_hf(model)
    # the original models resize the position embedding differently from Dinov2Model (warned)
    assert ("outputs agree only at 518 px" in caplog.text) == (not registers)
    save_file(state, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(config))
    cls = Dinov2WithRegistersModel if registers else Dinov2Model
    hf, info = cls.from_pretrained(tmp_path, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    size = (252, 308) if registers else (518, 518)
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        diff = _max_diff(_tokens(model.forward_features(x)),
                         _split(hf.eval()(pixel_values=x).last_hidden_state, 4 * registers))
    print(f"\nexport {variant} -> transformers {cls.__name__} at {size}: {diff:.2e}")
    assert diff <= TOL
    back = dinov2_vit.convert_state_dict(state, dinov2_vit.detect_format(state))
    ref = model.state_dict()
    assert set(back) == set(ref) and all(torch.equal(back[k], ref[k]) for k in ref)
    # and back into dinobench from the directory (architecture read from config.json)
    reloaded = dinobench.create_backbone("hf", weights=tmp_path)
    assert type(reloaded) is type(model) and all(torch.equal(reloaded.state_dict()[k], ref[k]) for k in ref)
    kwargs = dinov2_vit.kwargs_from_hf_config(config)
    assert {k: kwargs[k] for k in DINOV2_VIT[variant][0]} == {**DINOV2_VIT[variant][0], **TINY}


# ----------------------------------------------------------------------------- contract and API
def test_contract_shapes_and_crop(caplog):
    torch.manual_seed(0)
    model = dinov2_vit.dinov2_vits14_reg(**TINY).eval()
    assert (model.embed_dim, model.patch_size, model.n_storage_tokens) == (64, 14, 4)
    assert model.image_mean == (0.485, 0.456, 0.406) and model.image_std == (0.229, 0.224, 0.225)
    assert model.variant_config == {**DINOV2_VIT["dinov2_vits14_reg"][0], **TINY}
    x = torch.randn(2, 3, 230, 200)
    with caplog.at_level("DEBUG", logger="dinobench"), torch.no_grad():
        out = model.forward_features(x)
        ref = model.forward_features(x[..., :224, :196])
    assert "cropping input 230x200 to 224x196" in caplog.text
    assert out["x_norm_clstoken"].shape == (2, 64) and out["x_storage_tokens"].shape == (2, 4, 64)
    assert out["x_norm_patchtokens"].shape == (2, 16 * 14, 64) and out["x_prenorm"].shape == (2, 1 + 4 + 224, 64)
    for key in ("x_norm_clstoken", "x_storage_tokens", "x_norm_patchtokens", "x_prenorm"):
        assert torch.equal(out[key], ref[key])
    normed = model.norm(out["x_prenorm"])
    torch.testing.assert_close(out["x_storage_tokens"], normed[:, 1:5])
    with torch.no_grad():
        torch.testing.assert_close(model(x), out["x_norm_clstoken"])
        masks = torch.zeros(2, 224, dtype=torch.bool)
        masks[:, :10] = True
        masked = model.forward_features(x, masks=masks)["x_norm_patchtokens"]
    assert not torch.allclose(masked, out["x_norm_patchtokens"])
    with pytest.raises(ValueError, match="blocks"):
        model.get_intermediate_layers(x, n=5)
    with pytest.raises(ValueError, match="smaller than one 14x14 patch"):
        model.forward_features(torch.randn(1, 3, 10, 30))


def test_meta_build_and_parameter_counts():
    # exact counts of the official torch-hub models (facebookresearch/dinov2, pretrained=False),
    # and the figures published in the DINOv2 README (rounded: ViT-S/14 "21M" is really 22.06M,
    # ViT-g/14 "1.1B" is 1.136B, hence the wider tolerance for those two)
    official = {"dinov2_vits14": 22_056_576, "dinov2_vitb14": 86_580_480,
                "dinov2_vitl14": 304_368_640, "dinov2_vitg14": 1_136_480_768}
    published = {"dinov2_vits14": (21e6, 0.06), "dinov2_vitb14": (86e6, 0.02),
                  "dinov2_vitl14": (300e6, 0.02), "dinov2_vitg14": (1.1e9, 0.04)}
    for name, count in official.items():
        for suffix, extra in (("", 0), ("_reg", 4 * DINOV2_VIT[name][1]["embed_dim"])):
            with torch.device("meta"):
                model = dinov2_vit.build(name + suffix)
            assert all(p.is_meta for p in model.parameters())
            n = sum(p.numel() for p in model.parameters())
            value, tol = published[name]
            print(f"\n{name + suffix}: {n:,} parameters ({(n - value) / value:+.1%} vs published)")
            assert n == count + extra and abs(n - value) / value <= tol
            assert n == dinobench.backbones.factory.count_parameters(name + suffix)
    # key names, order and shapes of the official dinov2_vitg14_reg4_pretrain.pth (torch hub model)
    with torch.device("meta"):
        state = dinov2_vit.dinov2_vitg14_reg().state_dict()
    head = {"cls_token": (1, 1, 1536), "pos_embed": (1, 1370, 1536), "register_tokens": (1, 4, 1536),
            "mask_token": (1, 1536), "patch_embed.proj.weight": (1536, 3, 14, 14), "patch_embed.proj.bias": (1536,)}
    block = {"norm1.weight": (1536,), "norm1.bias": (1536,), "attn.qkv.weight": (4608, 1536),
             "attn.qkv.bias": (4608,), "attn.proj.weight": (1536, 1536), "attn.proj.bias": (1536,),
             "ls1.gamma": (1536,), "norm2.weight": (1536,), "norm2.bias": (1536,),
             "mlp.w12.weight": (8192, 1536), "mlp.w12.bias": (8192,), "mlp.w3.weight": (1536, 4096),
             "mlp.w3.bias": (1536,), "ls2.gamma": (1536,)}
    expected = {**head, **{f"blocks.{i}.{k}": v for i in range(40) for k, v in block.items()},
                "norm.weight": (1536,), "norm.bias": (1536,)}
    assert list(state) == list(expected)
    assert all(tuple(state[k].shape) == v for k, v in expected.items())


def test_module_api_and_formats():
    assert dinov2_vit.HF_MODEL_TYPES == ("dinov2", "dinov2_with_registers")
    assert dinov2_vit.dinov2_vitl14_reg.args == ("dinov2_vitl14_reg",)
    with pytest.raises(AttributeError):
        dinov2_vit.dinov2_vitx14  # noqa: B018
    model = dinov2_vit.build(None, patch_size=14, img_size=56, embed_dim=32, depth=1, num_heads=2)
    assert model.variant_config == {"patch_size": 14, "img_size": 56, "embed_dim": 32, "depth": 1, "num_heads": 2}
    assert model.pos_embed.shape == (1, 17, 32) and model.register_tokens is None
    assert 0 < model.cls_token.abs().max() < 1e-4  # official init: N(0, 1e-6)
    with pytest.raises(ValueError, match="ffn_layer"):
        dinov2_vit.build("dinov2_vits14", ffn_layer="swiglu64")
    with pytest.raises(ValueError, match="model_type"):
        dinov2_vit.kwargs_from_hf_config({"model_type": "dinov3_vit", "hidden_size": 64})
    assert dinov2_vit.detect_format({"cls_token": torch.zeros(1), "storage_tokens": torch.zeros(1)}) is None
    dinov3_state = {"cls_token": torch.zeros(1), "rope_embed.periods": torch.zeros(1),
                    "pos_embed": torch.zeros(1), "blocks.0.attn.qkv.weight": torch.zeros(1)}
    assert dinov2_vit.detect_format(dinov3_state) is None
    prefixed = {f"dinov2.{k}": v for k, v in _hf_peer(False, False, seed=0)[0].state_dict().items()}
    assert dinov2_vit.detect_format(prefixed) == "hf"
    assert "blocks.3.attn.qkv.weight" in dinov2_vit.convert_state_dict(prefixed, "hf")
    with pytest.raises(ValueError, match="format"):
        dinov2_vit.convert_state_dict({}, "onnx")
    assert math.isclose(dinov2_vit.kwargs_from_hf_config(
        {"model_type": "dinov2_with_registers", "hidden_size": 64, "num_hidden_layers": 1,
         "num_attention_heads": 2})["interpolate_offset"], 0.0)
    listed = dinobench.list_backbones()
    assert {f"dinov2_vit{s}14{r}" for s in "sblg" for r in ("", "_reg")} <= set(listed)
