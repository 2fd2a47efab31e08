"""DINOv3 ViT numerical parity with transformers and timm on the same (random) weights, and
every checkpoint format: HF directory / safetensors, timm state dict, official .pth, export."""

from __future__ import annotations

import json

import pytest
import timm
import torch
from transformers import DINOv3ViTConfig, DINOv3ViTModel

import dinobench
from dinobench.backbones import from_pretrained
from dinobench.backbones.export import export_hf, export_pth

SIZES = [(224, 224), (256, 320), (200, 235)]  # the last is not a multiple of 16: both sides crop
TOL = 1e-4


def randomize_(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every parameter a distinct random value (LayerScale/LayerNorm would otherwise be trivial)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            scale = 0.3 if ("lambda1" in name or "gamma" in name or "norm" in name) else 0.05
            p.copy_(torch.randn(p.shape, generator=gen) * scale + (1.0 if name.endswith("norm1.weight") else 0.0))
    return module.eval()


def split_tokens(tokens: torch.Tensor, n_storage: int) -> dict[str, torch.Tensor]:
    return {"x_norm_clstoken": tokens[:, 0], "x_storage_tokens": tokens[:, 1:1 + n_storage],
            "x_norm_patchtokens": tokens[:, 1 + n_storage:]}


def max_diffs(ours, theirs) -> dict[str, float]:
    keys = ("x_norm_clstoken", "x_storage_tokens", "x_norm_patchtokens")
    return {k: (ours[k] - theirs[k]).abs().max().item() for k in keys}


def hf_model(gated: bool, seed: int = 0, **kw) -> DINOv3ViTModel:
    cfg = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128 if gated else 256,
               num_register_tokens=4, use_gated_mlp=gated, hidden_act="silu" if gated else "gelu",
               layerscale_value=1e-5, key_bias=False)
    cfg.update(kw)
    return randomize_(DINOv3ViTModel(DINOv3ViTConfig(**cfg)), seed)


@pytest.mark.parametrize("gated", [False, True])
def test_hf_directory_parity(tmp_path, gated):
    peer = hf_model(gated)
    peer.save_pretrained(tmp_path / "hf")
    ours = from_pretrained(tmp_path / "hf")
    assert ours.embed_dim == 64 and ours.n_storage_tokens == 4 and ours.patch_size == 16
    torch.manual_seed(0)
    for h, w in SIZES:
        x = torch.randn(2, 3, h, w)
        with torch.no_grad():
            theirs = split_tokens(peer(x).last_hidden_state, 4)
            diffs = max_diffs(ours.forward_features(x), theirs)
        print(f"HF DINOv3ViT ({'swiglu' if gated else 'mlp'}) {h}x{w}: max abs diff {diffs}")
        assert max(diffs.values()) <= TOL, diffs


def test_hf_safetensors_file_into_named_backbone_and_intermediate_layers(tmp_path):
    peer = hf_model(gated=False, seed=1)
    peer.save_pretrained(tmp_path / "hf")
    ours = dinobench.create_backbone("vits16", weights=str(tmp_path / "hf" / "model.safetensors"),
                                     embed_dim=64, depth=2, num_heads=4)
    x = torch.randn(2, 3, 64, 80)
    with torch.no_grad():
        out = peer(x, output_hidden_states=True)
        hidden = out.hidden_states  # (embeddings, block 1, block 2), before the final norm
        for n, blocks in [(1, [1]), (2, [0, 1]), ([0], [0]), ([1, 0], [0, 1])]:
            layers = ours.get_intermediate_layers(x, n=n, return_class_token=True, return_extra_tokens=True)
            raw = ours.get_intermediate_layers(x, n=n, norm=False)
            for (patches, cls, extra), prenorm, b in zip(layers, raw, blocks):
                normed = peer.norm(hidden[b + 1])
                assert (patches - normed[:, 5:]).abs().max() <= TOL
                assert (cls - normed[:, 0]).abs().max() <= TOL
                assert (extra - normed[:, 1:5]).abs().max() <= TOL
                assert (prenorm - hidden[b + 1][:, 5:]).abs().max() <= TOL


def test_intermediate_layers_n4_index_lists_and_reshape_match_transformers(tmp_path):
    """A depth-4 model: n=4 (every block), n=1, an index list, and reshape=True grids."""
    peer = hf_model(gated=True, seed=6, num_hidden_layers=4)
    peer.save_pretrained(tmp_path / "hf")
    ours = from_pretrained(tmp_path / "hf")
    x = torch.randn(2, 3, 48, 80)  # a 3 x 5 patch grid
    with torch.no_grad():
        hidden = peer(x, output_hidden_states=True).hidden_states
        for n, blocks in [(4, [0, 1, 2, 3]), (1, [3]), ([0, 2], [0, 2]), ([3, 1], [1, 3])]:
            layers = ours.get_intermediate_layers(x, n=n, reshape=True, return_class_token=True)
            assert len(layers) == len(blocks)
            for (grid, cls), b in zip(layers, blocks):
                normed = peer.norm(hidden[b + 1])
                assert grid.shape == (2, 64, 3, 5)
                assert (grid.flatten(2).transpose(1, 2) - normed[:, 5:]).abs().max() <= TOL
                assert (cls - normed[:, 0]).abs().max() <= TOL


def test_full_size_vits16_parity_with_transformers(tmp_path):
    peer = randomize_(DINOv3ViTModel(DINOv3ViTConfig(num_register_tokens=4, layerscale_value=1e-5, key_bias=False)))
    peer.save_pretrained(tmp_path / "hf")
    ours = dinobench.create_backbone("vits16", weights=str(tmp_path / "hf"))
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        diffs = max_diffs(ours.forward_features(x), split_tokens(peer(x).last_hidden_state, 4))
    print(f"HF DINOv3ViT full-size vits16 224x224: max abs diff {diffs}")
    assert max(diffs.values()) <= TOL, diffs


@pytest.mark.parametrize("timm_name,ours_name", [("vit_small_patch16_dinov3_qkvb", "vits16"),
                                                 ("vit_small_plus_patch16_dinov3_qkvb", "vits16plus"),
                                                 ("vit_small_patch16_dinov3", "vits16")])
def test_timm_state_dict_parity(tmp_path, timm_name, ours_name):
    peer = randomize_(timm.create_model(timm_name, pretrained=False, embed_dim=64, depth=2, num_heads=4), seed=2)
    torch.save(peer.state_dict(), tmp_path / "timm.pth")
    ours = dinobench.create_backbone(ours_name, weights=str(tmp_path / "timm.pth"), embed_dim=64, depth=2, num_heads=4)
    for h, w in SIZES:
        x = torch.randn(2, 3, h, w)
        cropped = x[..., : h - h % 16, : w - w % 16]  # timm refuses non-multiples; dinobench crops itself
        with torch.no_grad():
            theirs = split_tokens(peer.forward_features(cropped), 4)
            diffs = max_diffs(ours.forward_features(x), theirs)
        print(f"timm {timm_name} {h}x{w}: max abs diff {diffs}")
        assert max(diffs.values()) <= TOL, diffs


def test_export_round_trip_to_transformers(tmp_path):
    torch.manual_seed(3)
    ours = randomize_(dinobench.create_backbone("vits16plus", embed_dim=64, depth=2, num_heads=4), seed=3)
    export_hf(ours, tmp_path / "export")
    config = json.loads((tmp_path / "export" / "config.json").read_text())
    assert config["model_type"] == "dinov3_vit" and config["use_gated_mlp"] is True
    peer = DINOv3ViTModel.from_pretrained(tmp_path / "export").eval()
    x = torch.randn(2, 3, 96, 112)
    with torch.no_grad():
        diffs = max_diffs(ours.forward_features(x), split_tokens(peer(x).last_hidden_state, 4))
    print(f"dinobench -> HF export -> transformers: max abs diff {diffs}")
    assert max(diffs.values()) <= TOL, diffs
    back = from_pretrained(tmp_path / "export")  # and back again
    with torch.no_grad():
        assert max(max_diffs(back.forward_features(x), ours.forward_features(x)).values()) <= TOL


def test_official_pth_round_trip_is_bit_identical(tmp_path):
    torch.manual_seed(4)
    original = randomize_(dinobench.create_backbone("vits16", embed_dim=64, depth=2, num_heads=4), seed=4)
    torch.save(original.state_dict(), tmp_path / "official.pth")
    loaded = dinobench.create_backbone("vits16", weights=str(tmp_path / "official.pth"),
                                       embed_dim=64, depth=2, num_heads=4)
    export_pth(loaded, tmp_path / "again.pth")
    a = torch.load(tmp_path / "official.pth", weights_only=True)
    b = torch.load(tmp_path / "again.pth", weights_only=True)
    assert list(a) == list(b)
    for key in a:
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


def test_hf_directory_with_wrong_named_architecture_is_a_clear_error(tmp_path):
    hf_model(gated=False).save_pretrained(tmp_path / "hf")
    with pytest.raises(dinobench.DinobenchError, match="shape mismatch"):
        dinobench.create_backbone("vitb16", weights=str(tmp_path / "hf"))


def test_cli_export_then_transformers_loads_it(tmp_path, run_cli):
    torch.manual_seed(5)
    ours = randomize_(dinobench.create_backbone("vits16", embed_dim=64, depth=2, num_heads=4), seed=5)
    export_pth(ours, tmp_path / "ours.pth")
    code, out, err = run_cli("export", "--backbone", "hf", "--weights", str(tmp_path / "missing"),
                             "--output", str(tmp_path / "x"))
    assert code == 2 and "does not exist" in err
    # name the architecture, convert the .pth into an HF folder, load it with transformers
    from dinobench.cli import main

    assert main(["export", "--backbone", "vits16", "--weights", str(tmp_path / "ours.pth"),
                 "--output", str(tmp_path / "hf")]) == 2  # tiny weights do not fit full-size vits16
    exported = export_hf(ours, tmp_path / "hf2")
    code, out, err = run_cli("export", "--backbone", "hf", "--weights", str(exported), "--format", "pth",
                             "--output", str(tmp_path / "back.pth"))
    assert code == 0, err
    back = torch.load(tmp_path / "back.pth", weights_only=True)
    for key, value in ours.state_dict().items():
        if key.endswith("qkv.bias"):  # HF has no K bias: the masked (never used) K part comes back as 0
            mask = back[key + "_mask"]
            assert torch.equal(back[key] * mask, value * mask) and back[key][mask == 0].eq(0).all(), key
        else:
            assert torch.equal(back[key], value), key
    peer = DINOv3ViTModel.from_pretrained(exported).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert max(max_diffs(ours.forward_features(x), split_tokens(peer(x).last_hidden_state, 4)).values()) <= TOL
    code, _, err = run_cli("export", "--backbone", "vits16", "--output", str(exported))
    assert code == 2 and "exists and is not empty" in err
