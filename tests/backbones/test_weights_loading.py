"""Checkpoint reading: .pth (plain and wrapped), safetensors, clear errors."""

import pytest
import torch
from safetensors.torch import save_file

import dinobench
from dinobench.errors import WeightsError

TINY = dict(embed_dim=64, depth=2, num_heads=4)


@pytest.fixture(scope="module")
def source():
    torch.manual_seed(1)
    return dinobench.create_backbone("vits16", **TINY)


def _same_outputs(a, b):
    x = torch.randn(2, 3, 48, 32)
    fa, fb = a.forward_features(x), b.forward_features(x)
    for key in ("x_norm_clstoken", "x_storage_tokens", "x_norm_patchtokens"):
        assert torch.equal(fa[key], fb[key]), key


def test_plain_pth_roundtrip_is_exact(source, tmp_path):
    path = tmp_path / "plain.pth"
    torch.save(source.state_dict(), path)
    loaded = dinobench.create_backbone("vits16", weights=str(path), **TINY)
    _same_outputs(source, loaded)
    assert all(not p.is_meta for p in loaded.parameters())


def test_wrapped_training_checkpoint(source, tmp_path):
    path = tmp_path / "train.pth"
    wrapped = {f"backbone.{k}": v for k, v in source.state_dict().items()}
    wrapped["dino_head.mlp.0.weight"] = torch.zeros(2, 2)
    torch.save({"teacher": wrapped, "iteration": 10}, path)
    _same_outputs(source, dinobench.create_backbone("vits16", weights=str(path), **TINY))


def test_safetensors(source, tmp_path):
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    _same_outputs(source, dinobench.create_backbone("vits16", weights=str(path), **TINY))


def test_missing_truncated_and_wrong_architecture(source, tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        dinobench.create_backbone("vits16", weights=str(tmp_path / "nope.pth"), **TINY)
    good = tmp_path / "good.pth"
    torch.save(source.state_dict(), good)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(WeightsError, match="truncated.pth: not a readable checkpoint"):
        dinobench.create_backbone("vits16", weights=str(truncated), **TINY)
    with pytest.raises(WeightsError, match=r"shape mismatch cls_token: expected \(1, 1, 128\) found \(1, 1, 64\)"):
        dinobench.create_backbone("vits16", weights=str(good), embed_dim=128, depth=2, num_heads=4)
    with pytest.raises(WeightsError, match="unexpected keys"):
        dinobench.create_backbone("vits16", weights=str(good), embed_dim=64, depth=1, num_heads=4)


def test_strict_false_is_opt_in_and_logs_what_was_skipped(source, tmp_path, caplog):
    state = dict(source.state_dict())
    state.pop("norm.weight")
    state["extra_head.weight"] = torch.zeros(3)
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    with pytest.raises(WeightsError, match="1 missing keys .first: norm.weight.; 1 unexpected keys .first: extra_head"):
        dinobench.create_backbone("vits16", weights=str(path), **TINY)
    torch.manual_seed(0)
    with caplog.at_level("WARNING", logger="dinobench"):
        model = dinobench.create_backbone("vits16", weights=str(path), strict=False, **TINY)
    assert "strict=False" in caplog.text and "norm.weight" in caplog.text and "extra_head.weight" in caplog.text
    assert torch.equal(model.cls_token, source.cls_token)  # loaded
    assert torch.equal(model.norm.weight, torch.ones(64))  # kept its initial value
