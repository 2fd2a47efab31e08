"""The backbone contract on the DINOv3 ViT (numerical parity with peers lives in the zoo tests)."""

import math

import pytest
import torch

import dinobench
from dinobench.backbones.factory import count_parameters
from dinobench.backbones.layers.rope import RopePositionEmbedding
from dinobench.errors import ConfigError


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return dinobench.create_backbone("vits16", embed_dim=64, depth=3, num_heads=4)


def test_forward_features_shapes_and_norms(model):
    x = torch.randn(2, 3, 64, 48)
    out = model.forward_features(x)
    n_patches = (64 // 16) * (48 // 16)
    assert model.embed_dim == 64 and model.patch_size == 16 and model.n_storage_tokens == 4
    assert out["x_norm_clstoken"].shape == (2, 64)
    assert out["x_storage_tokens"].shape == (2, 4, 64)
    assert out["x_norm_patchtokens"].shape == (2, n_patches, 64)
    assert out["x_prenorm"].shape == (2, 1 + 4 + n_patches, 64)
    normed = model.norm(out["x_prenorm"])
    torch.testing.assert_close(out["x_norm_clstoken"], normed[:, 0])
    torch.testing.assert_close(out["x_storage_tokens"], normed[:, 1:5])
    torch.testing.assert_close(out["x_norm_patchtokens"], normed[:, 5:])
    torch.testing.assert_close(model(x), out["x_norm_clstoken"])


def test_get_intermediate_layers_official_semantics(model):
    x = torch.randn(2, 3, 32, 48)
    feats = model.forward_features(x)
    (last,) = model.get_intermediate_layers(x, n=1)
    torch.testing.assert_close(last, feats["x_norm_patchtokens"])
    (prenorm,) = model.get_intermediate_layers(x, n=1, norm=False)
    torch.testing.assert_close(prenorm, feats["x_prenorm"][:, 5:])
    two = model.get_intermediate_layers(x, n=2)
    by_index = model.get_intermediate_layers(x, n=[1, 2])
    assert len(two) == 2
    for a, b in zip(two, by_index):
        torch.testing.assert_close(a, b)
    first = model.get_intermediate_layers(x, n=[0])[0]
    assert not torch.allclose(first, last)
    ((patches, cls, extra),) = model.get_intermediate_layers(
        x, n=1, reshape=True, return_class_token=True, return_extra_tokens=True)
    assert patches.shape == (2, 64, 2, 3)
    torch.testing.assert_close(patches.flatten(2).transpose(1, 2), last)
    torch.testing.assert_close(cls, feats["x_norm_clstoken"])
    torch.testing.assert_close(extra, feats["x_storage_tokens"])
    ((_, cls_only),) = model.get_intermediate_layers(x, n=1, return_class_token=True)
    torch.testing.assert_close(cls_only, cls)
    with pytest.raises(ValueError, match="blocks"):
        model.get_intermediate_layers(x, n=5)


def test_input_not_multiple_of_patch_is_cropped(model, caplog):
    x = torch.randn(1, 3, 70, 50)
    with caplog.at_level("DEBUG", logger="dinobench"):
        out = model.forward_features(x)["x_norm_patchtokens"]
    ref = model.forward_features(x[..., :64, :48])["x_norm_patchtokens"]
    torch.testing.assert_close(out, ref)
    assert "cropping input 70x50 to 64x48" in caplog.text


def test_bad_input_shapes_are_clear(model):
    with pytest.raises(ValueError, match=r"expected an image batch \[B, 3, H, W\], got a tensor of shape \(3, 32, 32\)"):
        model.forward_features(torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match=r"got a tensor of shape \(1, 1, 32, 32\)"):
        model.forward_features(torch.randn(1, 1, 32, 32))
    with pytest.raises(ValueError, match="smaller than one 16x16 patch"):
        model.forward_features(torch.randn(1, 3, 8, 32))


def test_rope_periods_and_angles_hand_computed():
    rope = RopePositionEmbedding(64, num_heads=4, base=100.0)  # head_dim 16 -> 4 periods
    torch.testing.assert_close(rope.periods, torch.tensor([1.0, 100**0.25, 10.0, 100**0.75]))
    sin, cos = rope(H=2, W=1)
    assert sin.shape == (2, 16)
    # patch (row 0, col 0): row coord 2*(0.5/2)-1 = -0.5, col coord 2*(0.5/1)-1 = 0
    expected_angles = [2 * math.pi * -0.5 / p for p in rope.periods.tolist()] + [0.0] * 4
    torch.testing.assert_close(sin[0], torch.tensor(expected_angles * 2).sin())
    torch.testing.assert_close(cos[0], torch.tensor(expected_angles * 2).cos())


def test_rope_tables_are_kept_per_grid_and_follow_the_periods():
    rope = RopePositionEmbedding(64, num_heads=4, base=100.0)
    first = rope(H=3, W=2)
    assert rope(H=3, W=2)[0] is first[0]  # kept: one computation per grid, not one per block and forward
    assert rope(H=2, W=3)[0].shape == (6, 16) and rope(H=2, W=3)[0] is not first[0]
    other = RopePositionEmbedding(64, num_heads=4, base=10.0)
    rope.load_state_dict(other.state_dict())  # new periods in place: the kept tables are stale
    torch.testing.assert_close(rope(H=3, W=2)[0], other(H=3, W=2)[0], rtol=0, atol=0)
    rope.double()
    assert rope(H=3, W=2)[0].dtype == torch.float64
    augmenting = RopePositionEmbedding(64, num_heads=4, base=100.0, shift_coords=0.5).train()
    assert not torch.equal(augmenting(H=3, W=2)[0], augmenting(H=3, W=2)[0])  # a fresh draw per call (per block)
    assert torch.equal(augmenting.eval()(H=3, W=2)[0], augmenting(H=3, W=2)[0])


def test_vit_forward_traces_into_one_graph_for_torch_compile(model):
    import torch._dynamo

    torch._dynamo.reset()
    with torch.no_grad():
        explained = torch._dynamo.explain(model.forward_features)(torch.randn(1, 3, 32, 32))
    assert explained.graph_break_count == 0, explained.break_reasons  # the kept RoPE tables stay out of the graph


def test_official_checkpoint_key_names(model):
    keys = set(model.state_dict())
    for key in ("cls_token", "storage_tokens", "mask_token", "rope_embed.periods", "patch_embed.proj.weight",
                "blocks.0.attn.qkv.bias_mask", "blocks.0.ls1.gamma", "blocks.0.mlp.fc1.weight", "norm.weight"):
        assert key in keys
    mask = model.blocks[0].attn.qkv.bias_mask
    assert mask[:64].eq(1).all() and mask[64:128].eq(0).all() and mask[128:].eq(1).all()
    swiglu = dinobench.create_backbone("vits16plus", embed_dim=64, depth=1, num_heads=4)
    assert swiglu.blocks[0].mlp.w1.out_features == 256  # int(64*6*2/3)=256, multiple of 8


@pytest.mark.parametrize("name,published", [
    ("vits16", 21.6e6), ("vits16plus", 28.7e6), ("vitb16", 85.7e6), ("vitl16", 0.303e9),
    ("vith16plus", 0.840e9), ("vit7b16", 6.716e9)])
def test_official_sizes_match_published_parameter_counts(name, published):
    assert abs(count_parameters(name) - published) / published < 0.01


def test_overrides_and_bad_overrides():
    m = dinobench.create_backbone("vits16", embed_dim=64, depth=2, num_heads=4, n_storage_tokens=0)
    assert len(m.blocks) == 2 and m.n_storage_tokens == 0
    assert m.forward_features(torch.randn(1, 3, 32, 32))["x_storage_tokens"].shape == (1, 0, 64)
    with pytest.raises(ConfigError, match="invalid override"):
        dinobench.create_backbone("vits16", embedding_dim=64)


def test_random_init_is_seeded():
    torch.manual_seed(3)
    a = dinobench.create_backbone("vit_tiny", embed_dim=64, depth=2, num_heads=2)
    torch.manual_seed(3)
    b = dinobench.create_backbone("vit_tiny", embed_dim=64, depth=2, num_heads=2)
    for (name, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(pa, pb), name


@pytest.mark.parametrize("name,dims", [
    ("vitl16plus", dict(embed_dim=1024, depth=24, heads=16, ffn="w1", hidden=4096)),
    ("vith16plus", dict(embed_dim=1280, depth=32, heads=20, ffn="w1", hidden=5120)),
    ("vit7b16", dict(embed_dim=4096, depth=40, heads=32, ffn="w1", hidden=8192)),
    ("vitl16", dict(embed_dim=1024, depth=24, heads=16, ffn="fc1", hidden=4096)),
])
def test_variant_architecture_facts(name, dims):
    """Sizes from the official model card, built on the meta device (no memory)."""
    with torch.device("meta"):
        model = dinobench.create_backbone(name)
    assert (model.embed_dim, len(model.blocks), model.blocks[0].attn.num_heads) == \
        (dims["embed_dim"], dims["depth"], dims["heads"])
    assert getattr(model.blocks[0].mlp, dims["ffn"]).out_features == dims["hidden"]
    assert model.patch_size == 16 and model.n_storage_tokens == 4


def test_sat493m_variants_use_their_own_normalisation():
    with torch.device("meta"):
        sat, lvd = dinobench.create_backbone("vitl16_sat493m"), dinobench.create_backbone("vitl16")
    assert sat.image_mean == pytest.approx((0.430, 0.411, 0.296)) and sat.image_std == pytest.approx((0.213, 0.156, 0.143))
    assert lvd.image_mean == pytest.approx((0.485, 0.456, 0.406)) and lvd.image_std == pytest.approx((0.229, 0.224, 0.225))


def test_drop_path_is_stochastic_depth_in_training_only():
    from dinobench.backbones.layers.block import drop_path

    x = torch.ones(4000, 3)
    torch.manual_seed(0)
    out = drop_path(x, 0.25, training=True)
    kept = out[:, 0] != 0
    assert torch.equal(out[kept], torch.full_like(out[kept], 1 / 0.75))  # rescaled survivors, whole samples
    assert abs(kept.float().mean().item() - 0.75) < 0.03
    assert drop_path(x, 0.25, training=False) is x and drop_path(x, 0.0, training=True) is x
    model = dinobench.create_backbone("vit_tiny", embed_dim=64, depth=2, num_heads=2, drop_path_rate=0.5)
    images = torch.randn(8, 3, 32, 32)
    model.train()
    a, b = model(images), model(images)
    assert not torch.equal(a, b)
    model.eval()
    assert torch.equal(model(images), model(images))
