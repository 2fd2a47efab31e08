"""Plain-DETR: official key layout and outputs (golden fixture from the official code), post-processing, box
re-parameterisation, strict loading of official-layout checkpoints."""

from __future__ import annotations

import sys

import pytest
import torch

from dinobench.errors import WeightsError
from dinobench.heads.plain_detr import HEAD_CONFIG_DEFAULTS, Padded, build_plain_detr, postprocess
from dinobench.heads.plain_detr.boxes import bbox2delta, cxcywh_to_xyxy, delta2bbox, inverse_sigmoid, xyxy_to_cxcywh
from dinobench.heads.weights import load_head_state, read_head_state
from dinobench.testing import assert_close_to_scale, deterministic_fill, key_shapes
from conftest import REPO

FIXTURE = REPO / "tests" / "fixtures" / "plaindetr_official.pt"
sys.path.insert(0, str(REPO / "scripts"))
import plaindetr_golden as golden  # noqa: E402  (the fixture's configurations, shared with its generator)

GOLDEN = torch.load(FIXTURE, weights_only=True)


#: the fixture is float64 (scripts/plaindetr_golden.py says why); inputs and weights are CPU-independent draws.
#: Measured differences to it on an AMD EPYC, relative to each output's largest magnitude (boxes reach ~100 px):
#: 0 with the CPU's own kernels, 1.2e-14 with one thread instead of two, 5.1e-14 with ATEN_CPU_CAPABILITY=default
#: instead of avx2 (other vector kernels, as another CPU has). Tolerance 1e-10 of the largest magnitude: 2000x the
#: measured spread, and far below a real divergence (one float32 step anywhere in the model moves outputs by >1e-7).
#: The official code keeps a few float32 islands (the two-stage proposal grid: enc_outputs.pred_boxes_old), equal
#: here in every setting above; 1e-6 of their scale allows a few float32 ulps of another CPU's kernels.
RTOL_OF_MAX = {torch.float64: 1e-10, torch.float32: 1e-6}


def _model(name: str):
    backbone = golden.tiny_backbone()
    model = build_plain_detr(backbone, **GOLDEN["configs"][name]["config"])
    deterministic_fill(model, f"{golden.SALT}:{name}")
    deterministic_fill(backbone, golden.SALT + ":backbone")
    return model.to(golden.DTYPE).eval()


def _assert_matches(got: torch.Tensor, expected: torch.Tensor, key: str) -> None:
    assert_close_to_scale(got, expected, RTOL_OF_MAX[expected.dtype], key)  # dtypes equal too


@pytest.mark.parametrize("name", sorted(golden.CONFIGS))
def test_keys_and_outputs_equal_the_official_detector(name):
    ref = GOLDEN["configs"][name]
    model = _model(name)
    assert list(key_shapes(model).items()) == list(ref["keys"].items())  # names, shapes and order
    with torch.no_grad():
        full = golden._flatten(model(golden.images(), all_queries=True))  # both query groups, every output
        inference = model(golden.images())  # eval mode: the one-to-one group only, as the hub runs it
    assert sorted(full) == sorted(ref["all_queries"])
    for key, expected in ref["all_queries"].items():
        _assert_matches(full[key], expected, key)
    for key in ("pred_logits", "pred_boxes"):
        _assert_matches(inference[key], ref["inference"][key], f"inference {key}")
    sizes = torch.tensor([list(s) for s in golden.IMAGE_SIZES])
    cfg = ref["config"]
    for got, expected in zip(postprocess(inference, sizes, cfg["topk"], cfg.get("reparam", True)), ref["postprocess"]):
        assert torch.equal(got["labels"], expected["labels"])
        _assert_matches(got["scores"], expected["scores"], "scores")
        _assert_matches(got["boxes"], expected["boxes"], "boxes")


def test_float32_outputs_stay_within_float32_rounding_of_the_official_float64_ones():
    """The detector as it runs (float32) against the float64 fixture, relative to the largest magnitude: measured
    5.0e-6 (logits) and 1.8e-6 (boxes) for this configuration, up to 2.4e-5 in the others (post-norm logits), and
    up to 1.8e-3 px absolute on the one-to-many boxes; 1e-4 is 20x this configuration's."""
    model = _model("release").float()
    with torch.no_grad():
        out = model([image.float() for image in golden.images()])
    for key in ("pred_logits", "pred_boxes"):
        assert_close_to_scale(out[key].double(), GOLDEN["configs"]["release"]["inference"][key], 1e-4, key)


def test_defaults_are_the_official_config_and_the_hub_fills_backbone_values():
    model = build_plain_detr(golden.tiny_backbone(), hidden_dim=64, nheads=2, dec_layers=1, num_encoder_layers=1,
                             num_queries_one2one=4, num_queries_one2many=4)
    cfg = model.config
    assert cfg["layers_to_use"] == [0, 1, 2, 3]  # m * n_blocks // 4 - 1 (hub), 4 blocks
    assert cfg["proposal_in_stride"] == 16 and cfg["proposal_tgt_strides"] == [8, 16, 32, 64]
    assert {k: cfg[k] for k in ("reparam", "two_stage", "k_one2many", "decoder_type")} == {
        "reparam": True, "two_stage": True, "k_one2many": 6, "decoder_type": "global_rpe_decomp"}
    assert set(HEAD_CONFIG_DEFAULTS) >= {"with_box_refine", "lambda_one2many", "proposal_min_size", "topk",
                                         "backbone_use_layernorm", "n_windows_sqrt", "aux_loss", "norm_type"}
    with pytest.raises(TypeError, match="unknown option.*hidden_dims"):
        build_plain_detr(golden.tiny_backbone(), hidden_dims=64)
    with pytest.raises(ValueError, match="global_rpe_decomp"):
        build_plain_detr(golden.tiny_backbone(), decoder_type="global_ape")
    assert not any(p.requires_grad for p in model.backbone[0].backbone.parameters())


def test_training_mode_runs_both_query_groups_and_backpropagates():
    torch.manual_seed(0)
    model = build_plain_detr(golden.tiny_backbone(), num_classes=3, hidden_dim=64, nheads=2, dec_layers=2,
                             dim_feedforward=64, num_encoder_layers=1, num_queries_one2one=5,
                             num_queries_one2many=7, decoder_rpe_hidden_dim=8).train()
    out = model([torch.randn(3, 48, 64), torch.randn(3, 64, 32)])
    assert out["pred_logits"].shape == (2, 5, 3) and out["pred_logits_one2many"].shape == (2, 7, 3)
    assert len(out["aux_outputs"]) == 1 and out["enc_outputs"]["pred_boxes"].shape[-1] == 4
    loss = out["pred_logits"].sum() + out["pred_boxes"].sum() + out["pred_boxes_one2many"].mean()
    loss.backward()
    trainable = [p for m in model.trainable_modules().values() for p in m.parameters()]
    assert all(p.grad is not None for p in model.input_proj.parameters())
    assert sum(p.grad is not None for p in trainable) > len(trainable) // 2


def test_boxes_round_trip_and_reparameterisation_inverts():
    gen = torch.Generator().manual_seed(0)
    cxcywh = torch.cat([torch.rand(50, 2, generator=gen) * 100, torch.rand(50, 2, generator=gen) * 40 + 1], -1)
    torch.testing.assert_close(xyxy_to_cxcywh(cxcywh_to_xyxy(cxcywh)), cxcywh)
    x0, y0, x1, y1 = cxcywh_to_xyxy(cxcywh).unbind(-1)
    torch.testing.assert_close(x1 - x0, cxcywh[:, 2])
    torch.testing.assert_close((y0 + y1) / 2, cxcywh[:, 1])
    proposals = cxcywh + torch.randn(50, 4, generator=gen).clamp(-0.5, 0.5)
    deltas = bbox2delta(proposals - torch.tensor([0, 0, 0.1, 0.1]), cxcywh)  # the 0.1 px guard undone
    torch.testing.assert_close(xyxy_to_cxcywh(delta2bbox(proposals, deltas)), cxcywh, atol=1e-3, rtol=1e-4)
    assert bbox2delta(proposals[:3], cxcywh[:5], pairwise=True).shape == (3, 5, 4)
    assert bbox2delta(proposals[:5], cxcywh[:5], pairwise=True).shape == (5, 5, 4)  # pairwise also for equal counts
    with pytest.raises(ValueError, match="pass pairwise=True"):
        bbox2delta(proposals[:3], cxcywh[:5])
    clipped = delta2bbox(torch.tensor([[[50.0, 50, 200, 200]]]), torch.zeros(1, 1, 4),
                         (torch.tensor([[[60.0]]]), torch.tensor([[[80.0]]])))
    assert clipped.tolist() == [[[0.0, 0.0, 80.0, 60.0]]]  # clipped to (W, H)
    torch.testing.assert_close(inverse_sigmoid(torch.tensor([0.2, 0.5, 0.0])),
                               torch.tensor([-1.3862944, 0.0, -11.512915]), atol=1e-4, rtol=0)


def test_postprocess_ranks_query_class_pairs_and_scales_boxes():
    logits = torch.full((1, 3, 2), -10.0)
    logits[0, 2, 1], logits[0, 0, 0] = 3.0, 1.0  # best: query 2 class 1, then query 0 class 0
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.4], [0.1, 0.1, 0.1, 0.1], [0.25, 0.5, 0.5, 1.0]]])
    (res,) = postprocess({"pred_logits": logits, "pred_boxes": boxes}, torch.tensor([[100, 200]]), topk=2)
    assert res["labels"].tolist() == [1, 0]
    torch.testing.assert_close(res["scores"], torch.tensor([3.0, 1.0]).sigmoid())
    torch.testing.assert_close(res["boxes"], torch.tensor([[0.0, 0.0, 100.0, 100.0], [80.0, 30.0, 120.0, 70.0]]))
    pixel = boxes * torch.tensor([200.0, 100.0, 200.0, 100.0])  # reparam: already in pixels, clipped
    pixel[0, 2, 2] = 500.0
    (res,) = postprocess({"pred_logits": logits, "pred_boxes": pixel}, torch.tensor([[100, 200]]), topk=1,
                         reparam=True)
    assert res["boxes"].tolist() == [[0.0, 0.0, 200.0, 100.0]]
    with pytest.raises(ValueError, match="target_sizes"):
        postprocess({"pred_logits": logits, "pred_boxes": boxes}, torch.tensor([100, 200]), topk=1)


def test_official_layout_checkpoint_loads_strictly_and_a_mismatch_is_one_line(tmp_path):
    model = _model("release")
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # random weights; the official aliases (decoder.bbox_embed = bbox_embed) share a tensor
        for value in model.state_dict().values():
            value.copy_(torch.randn(value.shape, generator=gen))
    head = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("backbone.0.backbone.")}
    path = tmp_path / "dinov3_vit7b16_coco2017_detr_head-test.pth"
    torch.save({"model": head}, path)  # the released layout: the detector's state dict under "model"
    other = build_plain_detr(golden.tiny_backbone(), **GOLDEN["configs"]["release"]["config"])
    load_head_state(other, read_head_state(path), path, optional_prefixes=("backbone.0.backbone.",))
    for key, value in head.items():
        assert torch.equal(other.state_dict()[key], value), key
    shared = other.transformer.decoder.bbox_embed[0].layers[0].weight  # the official aliases stay one tensor
    assert shared is other.bbox_embed[0].layers[0].weight
    del head["class_embed.0.bias"]
    head["extra.weight"] = torch.zeros(1)
    torch.save({"model": head}, path)
    with pytest.raises(WeightsError) as err:
        load_head_state(other, read_head_state(path), path, optional_prefixes=("backbone.0.backbone.",))
    message = str(err.value)
    assert "\n" not in message and "class_embed.0.bias" in message and "extra.weight" in message


def test_padded_batch_marks_padding():
    batch = Padded.from_images([torch.ones(3, 2, 4), torch.ones(3, 3, 1)])
    assert batch.tensors.shape == (2, 3, 3, 4) and batch.mask.shape == (2, 3, 4)
    assert batch.mask[0].tolist() == [[False] * 4, [False] * 4, [True] * 4]
    assert batch.mask[1, :, 0].tolist() == [False] * 3 and bool(batch.mask[1, :, 1:].all())
    assert batch.tensors[1, :, :, 1:].abs().sum() == 0
