"""Dense heads (linear seg, linear depth, DPT), SigLoss, backbone+head model, slide/whole/flip inference."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import TINY

import dinobench
from dinobench.backbones.contract import level_info
from dinobench.dense_inference import dense_predict, flip_tta, slide_inference, slide_windows, whole_inference
from dinobench.heads.model import BackboneNeckHead, DenseModel, center_padding
from dinobench.heads.necks import IntermediateLayers, Neck, resolve_layers
from dinobench.errors import ConfigError
from dinobench.heads.depth import BinsToDepth, LinearDepthHead, SigLoss, depth_bins
from dinobench.heads.dpt import DPTHead
from dinobench.heads.linear_seg import LinearSegHead, segmentation_loss


def _features(batch=2, dim=16, grid=(3, 5), n=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(batch, dim, *grid, generator=g), torch.randn(batch, dim, generator=g)) for _ in range(n)]


@pytest.fixture(scope="module")
def tiny_backbone():
    torch.manual_seed(0)
    return dinobench.create_backbone("vit_tiny", **TINY).eval()


# ----------------------------------------------------------------------------- linear segmentation
def test_linear_seg_head_matches_official_composition_and_trains():
    feats = _features(n=2)
    head = LinearSegHead([16, 16], num_classes=5, use_cls_token=True)
    assert head.channels == 64 and head.conv.bias.abs().sum() == 0
    assert 0.005 < head.conv.weight.std() < 0.015  # N(0, 0.01) init
    logits = head(feats, size=(12, 20))
    assert logits.shape == (2, 5, 12, 20)
    loss = segmentation_loss(logits, torch.randint(0, 5, (2, 12, 20)))
    loss.backward()
    assert head.conv.weight.grad.abs().sum() > 0 and head.batchnorm_layer.weight.grad.abs().sum() > 0

    # eval mode: no dropout, BN with running stats -> exactly conv(bn(concat(patch, cls)))
    head.eval()
    with torch.no_grad():
        x = torch.cat([torch.cat([p, c[:, :, None, None].expand_as(p)], 1) for p, c in feats], 1)
        bn = head.batchnorm_layer
        ref = (x - bn.running_mean[None, :, None, None]) / torch.sqrt(bn.running_var[None, :, None, None] + bn.eps)
        ref = ref * bn.weight[None, :, None, None] + bn.bias[None, :, None, None]
        ref = F.conv2d(ref, head.conv.weight, head.conv.bias)
        torch.testing.assert_close(head(feats), ref)


def test_dropout_comes_before_batchnorm_in_training():
    head = LinearSegHead(8, num_classes=3, dropout=0.5)
    order = []
    for name in ("dropout", "batchnorm_layer", "conv"):
        getattr(head, name).register_forward_hook(lambda module, inputs, output, name=name: order.append(name))
    torch.manual_seed(0)
    head(_features(dim=8, batch=4, grid=(2, 2)))
    assert order == ["dropout", "batchnorm_layer", "conv"]  # official LinearHead.forward order
    assert head.dropout.p == 0.5 and isinstance(head.dropout, torch.nn.Dropout2d)


def test_segmentation_loss_averages_over_all_pixels_like_official():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 5, 6)
    labels = torch.randint(0, 4, (2, 5, 6))
    labels[0, :2] = 255
    got = segmentation_loss(logits, labels)
    lg = logits.double().permute(0, 2, 3, 1).reshape(-1, 4).numpy()
    lab = labels.reshape(-1).numpy()
    logp = lg - np.log(np.exp(lg).sum(1, keepdims=True))
    per_pixel = np.where(lab == 255, 0.0, -logp[np.arange(len(lab)), np.where(lab == 255, 0, lab)])
    assert abs(float(got) - per_pixel.sum() / lab.size) < 1e-6  # divided by ALL pixels, not valid ones
    # logits on a coarser grid are upsampled to the label size first
    coarse = segmentation_loss(logits[..., ::2, ::2], labels)
    up = F.interpolate(logits[..., ::2, ::2], size=(5, 6), mode="bilinear", align_corners=False)
    torch.testing.assert_close(coarse, segmentation_loss(up, labels))


# ----------------------------------------------------------------------------- depth
def test_bins_and_bins_to_depth_match_numpy():
    bins = depth_bins(1e-3, 10.0, 256).double().numpy()
    assert np.allclose(bins, np.linspace(1e-3, 10.0, 256))
    assert np.allclose(depth_bins(1e-3, 10.0, 5, "log").numpy(), np.geomspace(1e-3, 10.0, 5), rtol=1e-5)
    x = torch.randn(2, 7, 3, 4)
    xs = x.double().numpy()
    centres = np.linspace(0.5, 8.0, 7)
    w = np.maximum(xs, 0) + 0.1
    w /= w.sum(1, keepdims=True)
    want_linear = np.einsum("bkhw,k->bhw", w, centres)[:, None]
    got = BinsToDepth(0.5, 8.0)(x).double().numpy()
    assert np.allclose(got, want_linear, atol=1e-5)
    sm = np.exp(xs) / np.exp(xs).sum(1, keepdims=True)
    got_sm = BinsToDepth(0.5, 8.0, norm_strategy="softmax")(x).double().numpy()
    assert np.allclose(got_sm, np.einsum("bkhw,k->bhw", sm, centres)[:, None], atol=1e-5)
    one = torch.tensor([[[[-1.0, 2.0]]]])
    assert torch.allclose(BinsToDepth(0.5, 8.0)(one), torch.tensor([[[[0.5, 2.5]]]]))  # regression: relu + min


def test_linear_depth_head_forward_backward():
    head = LinearDepthHead(16, n_bins=32, min_depth=0.1, max_depth=5.0)
    depth = head(_features())
    assert depth.shape == (2, 1, 3, 5) and (depth >= 0.1).all() and (depth <= 5.0).all()
    loss = SigLoss()(depth, torch.rand(2, 1, 3, 5) * 4 + 0.5)
    loss.backward()
    assert head.conv_depth.weight.grad.abs().sum() > 0


def test_sigloss_hand_computed():
    pred, gt = torch.tensor([2.0, 4.0, 9.0]), torch.tensor([1.0, 1.0, 1.0])
    valid = torch.tensor([True, True, False])
    loss = SigLoss(eps=0.0)
    # g = [ln 2, 2 ln 2]: mean 1.5 ln 2, unbiased var 0.5 (ln 2)^2
    want = math.sqrt(0.15 * 2.25 + 0.5) * math.log(2)
    assert abs(float(loss(pred, gt, valid)) - want) < 1e-6
    assert abs(float(loss(pred, gt, valid, iteration=99)) - math.sqrt(0.15 * 2.25) * math.log(2)) < 1e-6
    assert abs(float(loss(pred, gt, valid, iteration=100)) - want) < 1e-6  # warm-up over after 100 iterations
    # official epsilon 1e-3 against a float64 numpy reference
    rng = np.random.default_rng(0)
    p, t = rng.uniform(0.1, 9, 50), rng.uniform(0.1, 9, 50)
    g = np.log(p + 1e-3) - np.log(t + 1e-3)
    ref = math.sqrt(0.15 * g.mean() ** 2 + g.var(ddof=1))
    assert abs(float(SigLoss()(torch.tensor(p), torch.tensor(t))) - ref) < 1e-6
    assert float(SigLoss()(torch.ones(3), torch.ones(3), torch.zeros(3, dtype=torch.bool))) == 0.0  # no valid pixel


# ----------------------------------------------------------------------------- DPT
@pytest.mark.parametrize("readout", ["ignore", "add", "project"])
def test_dpt_head_scales_and_backward(readout):
    torch.manual_seed(0)
    head = DPTHead([16, 16, 16, 16], channels=8, post_process_channels=[4, 8, 8, 8], readout_type=readout,
                   use_batchnorm=True, n_bins=16, n_hidden_channels=4, min_depth=0.01, max_depth=10.0)
    feats = _features(n=4, grid=(4, 6))
    scales = [m.shape[-2:] for m in head.reassemble_blocks(feats)]
    assert scales == [(16, 24), (8, 12), (4, 6), (2, 3)]  # 4x, 2x, 1x, 0.5x of the patch grid
    depth = head(feats)
    assert depth.shape == (2, 1, 64, 96)  # 16x the patch grid
    # odd grids: the 0.5x map rounds up and skips are resized to the running map (as official)
    assert head(_features(n=4, grid=(3, 5))).shape == (2, 1, 64, 96)
    assert (depth > 0.01 - 1e-6).all() and (depth < 10.0).all()
    SigLoss()(depth, torch.rand_like(depth) + 0.5).backward()
    grads = [p.grad for p in head.parameters() if p.requires_grad]
    assert all(g is not None for g in grads) and head.reassemble_blocks.projects[0].conv.weight.grad.abs().sum() > 0
    assert head.fusion_blocks[0].res_conv_unit1 is None  # the coarsest fusion block has no skip input


def test_dpt_head_needs_four_layers():
    head = DPTHead([8] * 4, channels=8, n_bins=4, n_hidden_channels=4)
    with pytest.raises(ValueError, match="4 backbone layers"):
        head(_features(dim=8, n=2))


# ----------------------------------------------------------------------------- backbone + head
def test_resolve_layers_official_indices(tiny_backbone):
    class Fake(torch.nn.Module):
        def __init__(self, n):
            super().__init__()
            self.n_blocks = n

    assert resolve_layers(Fake(24), "four_even") == [4, 11, 17, 23]  # the paper's ViT-L indices
    assert resolve_layers(Fake(12), "four_even") == [2, 5, 8, 11]
    assert resolve_layers(Fake(40), "four_even") == [9, 19, 29, 39]
    assert resolve_layers(Fake(12), "last") == [11] and resolve_layers(Fake(12), "four_last") == [8, 9, 10, 11]
    assert resolve_layers(Fake(2), "four_even") == [0, 0, 1, 1] and resolve_layers(Fake(12), [-1, 3]) == [11, 3]
    with pytest.raises(ConfigError, match="protocol.head.layers"):
        resolve_layers(Fake(12), "middle")
    assert [level["num_chs"] for level in level_info(tiny_backbone, [0, 1])] == [64, 64]
    neck = IntermediateLayers(tiny_backbone, "four_even")
    assert neck.layers == [0, 0, 1, 1] and neck.out_channels == [64] * 4 and neck.out_strides == [8] * 4


def test_dense_model_pads_crops_and_freezes(tiny_backbone):
    head = LinearSegHead(64, num_classes=3)
    model = DenseModel(tiny_backbone, head, [1]).train()
    assert not tiny_backbone.training and model.head.training
    x = torch.randn(2, 3, 30, 45)  # not a multiple of the patch size (8)
    out = model(x)
    assert out.shape == (2, 3, 30, 45)
    out.sum().backward()
    assert all(p.grad is None for p in tiny_backbone.parameters())
    assert head.conv.weight.grad is not None
    # centre padding: the features are those of the zero-padded 32x48 input
    model.eval()
    with torch.no_grad():
        padded = F.pad(x, (1, 2, 1, 1))
        ref = F.interpolate(head(model.features(padded)), size=(32, 48), mode="bilinear", align_corners=False)
        torch.testing.assert_close(model(x), ref[..., 1:31, 1:46])
    feats = model.features(torch.randn(1, 3, 16, 24))
    assert feats[0][0].shape == (1, 64, 2, 3) and feats[0][1].shape == (1, 64)
    # duplicated layer indices (four_even on a 2-block backbone) are computed once, returned in order
    dup = DenseModel(tiny_backbone, head, [0, 0, 1, 1]).features(torch.randn(1, 3, 16, 16))
    assert len(dup) == 4 and torch.equal(dup[0][0], dup[1][0]) and not torch.equal(dup[1][0], dup[2][0])


class _AdapterNeck(Neck):
    """A neck with parameters that reads the images as well as the backbone (like ViT-Adapter)."""

    def __init__(self, backbone):
        super().__init__()
        self.mix = torch.nn.Conv2d(3, int(backbone.embed_dim), 1)
        self.out_channels, self.out_strides = [int(backbone.embed_dim)], [int(backbone.patch_size)]

    def forward(self, images, backbone):
        (patch_map, cls), = backbone.get_intermediate_layers(images, n=1, reshape=True, return_class_token=True)
        pixels = F.adaptive_avg_pool2d(self.mix(images), patch_map.shape[-2:])
        return {"map": patch_map + pixels, "cls": cls}


class _BoxHead(torch.nn.Module):
    """A head returning a dict (one box per image, in padded-input pixels); postprocess un-pads it."""

    def __init__(self, dim):
        super().__init__()
        self.box = torch.nn.Linear(dim, 4)

    def forward(self, features):
        return {"boxes": self.box(features["map"].mean(dim=(2, 3))), "map": features["map"]}

    def postprocess(self, outputs, image_size, padding):
        top, _, left, _ = padding
        shift = torch.tensor([left, top, left, top], dtype=outputs["boxes"].dtype)
        return {"boxes": outputs["boxes"] - shift, "image_size": image_size}


def test_neck_with_parameters_and_dict_head_with_postprocess(tiny_backbone):
    torch.manual_seed(0)
    neck, head = _AdapterNeck(tiny_backbone), _BoxHead(64)
    model = BackboneNeckHead(tiny_backbone, head, neck=neck).train()
    assert set(model.trainable_modules()) == {"neck", "head"}
    x = torch.randn(2, 3, 30, 45)
    out = model(x)
    assert set(out) == {"boxes", "map"} and out["map"].shape == (2, 64, 4, 6)  # dicts are not resized or cropped
    out["boxes"].sum().backward()
    assert neck.mix.weight.grad is not None and head.box.weight.grad is not None
    assert all(p.grad is None for p in tiny_backbone.parameters())  # frozen: no gradient through the backbone
    assert center_padding(30, 45, 8) == (1, 1, 1, 2)
    post = model.postprocess(out, (30, 45))
    torch.testing.assert_close(post["boxes"], out["boxes"] - torch.tensor([1.0, 1.0, 1.0, 1.0]))
    assert post["image_size"] == (30, 45)
    # a head without postprocess: outputs pass through
    assert model.postprocess.__func__(BackboneNeckHead(tiny_backbone, LinearSegHead(64, 3), [1]), out, (30, 45)) is out


def test_finetune_model_trains_the_backbone():
    torch.manual_seed(0)
    backbone = dinobench.create_backbone("vit_tiny", **TINY)
    model = DenseModel(backbone, LinearSegHead(64, 3), [1], finetune=True).train()
    assert backbone.training
    model(torch.randn(1, 3, 16, 16)).sum().backward()
    assert backbone.blocks[0].attn.qkv.weight.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- inference
def test_slide_equals_whole_when_one_crop_covers_the_image(tiny_backbone):
    torch.manual_seed(0)
    model = DenseModel(tiny_backbone, LinearSegHead(64, 4), [1]).eval()
    x = torch.randn(1, 3, 40, 56)
    with torch.no_grad():
        whole = whole_inference(model, x)
        for crop in (56, 64, (40, 56)):
            assert len(slide_windows(40, 56, crop, 341)) == 1
            torch.testing.assert_close(slide_inference(model, x, 4, crop, 341), whole)


def test_slide_windows_follow_mmseg_and_average_overlaps():
    assert slide_windows(512, 683, 512, 341) == [(0, 512, 0, 512), (0, 512, 171, 683)]
    windows = slide_windows(40, 70, 32, 20)
    assert windows == [(0, 32, 0, 32), (0, 32, 20, 52), (0, 32, 38, 70), (8, 40, 0, 32), (8, 40, 20, 52),
                       (8, 40, 38, 70)]
    conv = torch.nn.Conv2d(3, 2, 1)  # translation-equivariant: overlapping windows agree, mean == whole
    x = torch.randn(2, 3, 40, 70)
    with torch.no_grad():
        torch.testing.assert_close(slide_inference(conv, x, 2, 32, 20), conv(x))
        # a predictor that answers the window's number: each pixel gets the mean number of its windows
        calls = []

        def window_number(crop):
            calls.append(len(calls))
            return torch.full((crop.shape[0], 1, *crop.shape[-2:]), float(calls[-1]))

        got = slide_inference(window_number, x, 1, 32, 20)
        want = np.zeros((40, 70))
        count = np.zeros((40, 70))
        for number, (y1, y2, x1, x2) in enumerate(windows):
            want[y1:y2, x1:x2] += number
            count[y1:y2, x1:x2] += 1
        assert len(calls) == 6 and np.allclose(got[0, 0].numpy(), want / count)
        assert got[0, 0, 0, 0] == 0 and got[0, 0, 39, 69] == 5 and got[0, 0, 20, 45] == 3  # 4 windows: (1 + 2 + 4 + 5) / 4


def test_flip_tta_and_dense_predict():
    x = torch.randn(1, 3, 8, 10)
    ramp = torch.arange(10.0).expand(1, 1, 8, 10)

    def predict(img):  # not flip-equivariant: adds a left-to-right ramp
        return img.mean(1, keepdim=True) + ramp

    want = (predict(x) + predict(x.flip(-1)).flip(-1)) / 2
    torch.testing.assert_close(flip_tta(predict, x), want)
    torch.testing.assert_close(want - x.mean(1, keepdim=True), torch.full_like(want, 4.5))  # ramp averaged out
    out = dense_predict(predict, x, mode="whole", flip=True, out_size=(16, 20))
    assert out.shape == (1, 1, 16, 20)
    with pytest.raises(TypeError, match="slide inference needs num_outputs"):  # a caller's bug, not user input
        dense_predict(predict, x, mode="slide")
    with pytest.raises(ConfigError, match="protocol.inference.mode must be 'whole' or 'slide'"):
        dense_predict(predict, x, mode="tiled")
    with pytest.raises(ConfigError, match="positive crop_size and stride"):
        dense_predict(predict, x, mode="slide", num_outputs=1, crop_size=0)
