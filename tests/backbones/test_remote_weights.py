"""Remote weight sources, tested offline: a file:// URL through torch.hub's cache and an HF repo
id served from a Hugging Face cache that the test builds (HF_HUB_OFFLINE=1)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from transformers import DINOv3ViTConfig, DINOv3ViTModel

import dinobench

TINY = dict(embed_dim=64, depth=2, num_heads=4)


def test_file_url_goes_through_the_torch_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    torch.manual_seed(0)
    source = dinobench.create_backbone("vits16", **TINY)
    ckpt = tmp_path / "dinov3_vits16_tiny.pth"
    torch.save(source.state_dict(), ckpt)
    loaded = dinobench.create_backbone("vits16", weights=ckpt.as_uri(), **TINY)
    cached = tmp_path / "torch_home" / "hub" / "checkpoints" / ckpt.name
    assert cached.is_file() and loaded.weights_path == str(cached)
    x = torch.randn(1, 3, 32, 32)
    assert torch.equal(loaded(x), source(x))
    with pytest.raises(dinobench.DinobenchError, match="download failed"):
        dinobench.create_backbone("vits16", weights=(tmp_path / "absent.pth").as_uri(), **TINY)


def _hub_cache(root, repo_id: str) -> None:
    """The on-disk layout huggingface_hub writes: models--org--name/{refs/main, snapshots/<rev>/...}."""
    repo_dir = root / "hub" / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / "0123456789abcdef0123456789abcdef01234567"
    model = DINOv3ViTModel(DINOv3ViTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                           intermediate_size=256, num_register_tokens=4))
    model.save_pretrained(snapshot)
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(snapshot.name)


def test_hf_repo_id_from_an_offline_cache(tmp_path):
    _hub_cache(tmp_path / "hf_home", "facebook/dinov3-tiny-test")
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    code = ("import dinobench; m = dinobench.create_backbone('hf', weights='facebook/dinov3-tiny-test'); "
            "print(m.embed_dim, m.n_storage_tokens, len(m.blocks))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["64", "4", "2"]
    missing = subprocess.run([sys.executable, "-m", "dinobench", "run", "--backbone", "hf", "--task", "digits-knn",
                              "--weights", "facebook/not-in-cache", "--output", str(tmp_path / "out")],
                             capture_output=True, text=True, env=env)
    assert missing.returncode == 2
    assert "facebook/not-in-cache: cannot fetch Hugging Face repo (HF_HUB_OFFLINE is set" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1


def test_hf_pseudo_backbone_needs_a_directory(tmp_path):
    with pytest.raises(dinobench.DinobenchError, match="reads its architecture from a Hugging Face directory"):
        dinobench.create_backbone("hf")
    torch.save(dinobench.create_backbone("vits16", **TINY).state_dict(), tmp_path / "plain.pth")
    with pytest.raises(dinobench.DinobenchError, match="needs a Hugging Face directory with config.json"):
        dinobench.create_backbone("hf", weights=str(tmp_path / "plain.pth"))
