"""dino.txt: the offline CLIP tokenizer and the model against the official code (golden fixture), strict loading
of official-layout checkpoints, the released configuration's defaults."""

from __future__ import annotations

import inspect
import math
import sys

import pytest
import torch

from dinobench.errors import ConfigError, WeightsError
from dinobench.heads.weights import load_head_state, read_head_state
from dinobench.testing import deterministic_fill, key_shapes
from dinobench.text import Tokenizer, build_dinotxt, tokenize
from dinobench.text import tokenizer as tokenizer_module
from conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
import dinotxt_golden as golden  # noqa: E402  (the fixture's configuration, shared with its generator)

GOLDEN = torch.load(REPO / "tests" / "fixtures" / "dinotxt_official.pt", weights_only=True)
BACKBONE_PREFIX = "visual_model.backbone."


def _model():
    backbone = golden.tiny_backbone()
    text = golden.TEXT
    model = build_dinotxt(backbone, embed_dim=golden.EMBED_DIM, text_dim=text["dim"], text_heads=text["num_heads"],
                          text_layers=text["num_layers"], context_length=text["context_length"],
                          vocab_size=text["vocab_size"])
    deterministic_fill(model, golden.SALT)
    deterministic_fill(backbone, golden.SALT + ":backbone")
    return model.eval()


def test_tokenize_equals_the_official_tokenizer():
    assert GOLDEN["texts"] == golden.TEXTS
    got = tokenize(golden.TEXTS)
    assert got.dtype == torch.long and got.shape == (len(golden.TEXTS), 77)
    assert torch.equal(got, GOLDEN["tokens"])
    long = got[golden.TEXTS.index(" ".join(["overlong"] * 100))]
    assert long[0] == 49406 and long[-1] == 49407 and bool((long != 0).all())  # truncated, end token kept
    empty = got[golden.TEXTS.index("")]
    assert empty[:2].tolist() == [49406, 49407] and int(empty[2:].abs().sum()) == 0  # zero padding
    assert tokenize("a dog", context_length=5).tolist() == [Tokenizer()(["a dog"], 5)[0].tolist()]


def test_missing_vocabulary_is_one_line_naming_the_ways_to_provide_it(monkeypatch, tmp_path):
    monkeypatch.delenv("DINOBENCH_BPE_VOCAB", raising=False)
    monkeypatch.setattr(tokenizer_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="bpe_simple_vocab_16e6.txt.gz not found: pass its path, set "
                                          "DINOBENCH_BPE_VOCAB, or `pip install --no-deps open_clip_torch`"):
        Tokenizer(tmp_path / "missing.txt.gz")


def test_keys_and_outputs_equal_the_official_model():
    model = _model()
    assert list(key_shapes(model).items()) == list(GOLDEN["keys"].items())  # names, shapes and order
    images, tokens = golden.images(), GOLDEN["tokens"]
    with torch.no_grad():
        features, patch, backbone_patch = model.encode_image_with_patch_tokens(images)
        checks = {"image_features": features, "patch_tokens": patch, "backbone_patch_tokens": backbone_patch,
                  "encode_image": model.encode_image(images), "encode_image_normalized": model.encode_image(images, True),
                  "encode_text": model.encode_text(tokens), "encode_text_normalized": model.encode_text(tokens, True)}
    for name, value in checks.items():
        # float32; measured against the fixture on an AMD EPYC (CPU-independent inputs and weights): 0 with its own
        # kernels and on one thread, 4.8e-7 with ATEN_CPU_CAPABILITY=default (values up to 3.6): 1e-4 is 200x that
        torch.testing.assert_close(value, GOLDEN[name], atol=1e-4, rtol=0, msg=name)
    assert features.shape == (2, golden.EMBED_DIM)


def test_official_layout_checkpoint_loads_strictly_and_a_mismatch_is_one_line(tmp_path):
    source = _model()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for value in source.state_dict().values():
            value.copy_(torch.randn(value.shape, generator=gen))
    head = {k: v.clone() for k, v in source.state_dict().items() if not k.startswith(BACKBONE_PREFIX)}
    path = tmp_path / "dinov3_vitl16_dinotxt_vision_head_and_text_encoder-test.pth"
    torch.save(head, path)  # the released file: a bare state dict without the vision backbone
    target = _model()
    load_head_state(target, read_head_state(path), path, optional_prefixes=(BACKBONE_PREFIX,))
    assert all(torch.equal(target.state_dict()[k], v) for k, v in head.items())
    head.pop("logit_scale")
    torch.save(head, path)
    with pytest.raises(WeightsError) as err:
        load_head_state(target, read_head_state(path), path, optional_prefixes=(BACKBONE_PREFIX,))
    assert "\n" not in str(err.value) and "logit_scale" in str(err.value)


def test_released_configuration_defaults_and_a_trainable_frozen_backbone_split():
    defaults = {k: p.default for k, p in inspect.signature(build_dinotxt).parameters.items() if k != "vision_backbone"}
    assert defaults == {"embed_dim": 2048, "text_dim": 1280, "text_heads": 20, "text_layers": 24,
                        "context_length": 77, "vocab_size": 49408, "vision_head_blocks": 2}
    backbone = golden.tiny_backbone()
    model = build_dinotxt(backbone, embed_dim=128, text_dim=32, text_heads=2, text_layers=1, vocab_size=500)
    assert float(model.logit_scale) == pytest.approx(math.log(1 / 0.07))
    assert model.visual_model.head.linear_projection.__class__.__name__ == "Identity"  # 2 x 64 == 128
    assert model.visual_model.head.blocks[0].drop_path_rate == 0.3
    model.train()
    assert not backbone.training and not any(p.requires_grad for p in backbone.parameters())
    image, text, scale, _, _ = model(torch.randn(2, 3, 32, 32), torch.randint(1, 500, (2, 8)))
    (image @ text.T * scale).sum().backward()
    assert model.logit_scale.grad is not None and model.text_model.head.linear_projection.weight.grad is not None
    assert all(p.grad is not None for p in model.visual_model.head.parameters())
