"""Attentive probe: the probe's structure (tokens are a set unless position embeddings say otherwise), uniform
frame sampling and multi-view averaging by hand, the probe beating the linear probe on the same frozen backbone
on real digits, and the video tasks end to end on PyAV-encoded synthetic videos in the UCF-101, Kinetics-400 and
Something-Something-v2 layouts (and on frame folders)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from dinobench.synthetic.video import (write_synthetic_kinetics400, write_synthetic_ssv2,
                                            write_synthetic_ucf101)
from dinobench.data.video import ClipTransform, build_ucf101, frame_indices, read_clip
from dinobench.errors import DataError
from dinobench.heads.attentive import AttentiveProbe, ProbeGrid
from dinobench.protocols.attentive import per_video_probabilities
from helpers import run_task

pytest.importorskip("av")


def test_probe_is_permutation_invariant_without_position_embeddings_and_not_with_them():
    torch.manual_seed(0)
    tokens = torch.randn(2, 3, 2, 2, 32)  # [B, T, h, w, D]
    perm = torch.randperm(12)
    flat = tokens.reshape(2, 12, 32)
    plain = AttentiveProbe(32, 5, depth=3, num_heads=2).eval()
    torch.testing.assert_close(plain(flat), plain(flat[:, perm]), atol=1e-5, rtol=1e-5)
    timed = AttentiveProbe(32, 5, depth=3, num_heads=2, num_frames=3, num_patches=4).eval()
    assert timed(tokens).shape == (2, 5)
    assert not torch.allclose(timed(tokens), timed(tokens.flip(1)), atol=1e-4)  # frame order matters
    with pytest.raises(ValueError, match="built for 3 frames got clips of 4"):
        timed(torch.randn(1, 4, 2, 2, 32))


def test_probe_grid_gives_each_probe_its_learning_rate():
    grid = ProbeGrid([1e-4, 1e-3], base_lr=1e-3, dim=16, num_classes=3, depth=2, num_heads=1)
    groups = grid.param_groups()
    assert [g["lr_multiplier"] for g in groups] == pytest.approx([0.1, 1.0])
    assert grid(torch.randn(4, 2, 2, 16)).shape == (2, 4, 3)
    assert all(k.startswith("head.") for k in grid.state_dict())


def test_uniform_frame_sampling_and_view_averaging_by_hand():
    assert frame_indices(16, 4) == [2, 6, 10, 14]  # segment 4, centre of each
    assert frame_indices(16, 4, clip=0, n_clips=2) == [1, 5, 9, 13]
    assert frame_indices(16, 4, clip=1, n_clips=2) == [3, 7, 11, 15]
    assert frame_indices(3, 6) == [0, 0, 1, 1, 2, 2]  # short videos repeat frames
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.0, 0.0], [3.0, 3.0]])
    videos = torch.tensor([0, 0, 1, 1])
    probs, first = per_video_probabilities(logits, videos)
    expected = torch.stack([logits[:2].softmax(1).mean(0), logits[2:].softmax(1).mean(0)])
    torch.testing.assert_close(probs, expected)
    assert first.tolist() == [0, 2]


def test_clip_transform_crops_along_the_longer_side():
    frame = Image.fromarray(np.tile(np.arange(64, dtype=np.uint8)[None, :, None] * 4, (32, 1, 3)))  # 32 x 64
    transform = ClipTransform(32, 32, (0, 0, 0), (1, 1, 1))
    left, centre, right = (transform([frame], k, 3)[0, 0] for k in range(3))
    assert left[0, 0] * 255 == pytest.approx(0, abs=1) and right[0, -1] * 255 == pytest.approx(252, abs=1)
    assert centre[0, 0] * 255 == pytest.approx(64, abs=1)
    assert transform([frame] * 2).shape == (2, 3, 32, 32)


def test_decoded_videos_and_frame_folders_give_the_same_frames(tmp_path):
    write_synthetic_ucf101(tmp_path / "files", n_train=4, n_val=4)
    write_synthetic_ucf101(tmp_path / "frames", n_train=4, n_val=4, frames=True)
    files, frames = build_ucf101({}, str(tmp_path / "files")), build_ucf101({}, str(tmp_path / "frames"))
    assert [label for _, label in files["train"].samples] == [0, 1, 2, 3]
    decoded = np.stack([np.asarray(f) for f in read_clip(files["train"].samples[1][0], 4, 0, 1)]).astype(float)
    folder = np.stack([np.asarray(f) for f in read_clip(frames["train"].samples[1][0], 4, 0, 1)]).astype(float)
    assert decoded.shape == folder.shape == (4, 32, 40, 3)
    assert np.abs(decoded - folder).mean() < 12  # two lossy codecs (mpeg4, JPEG) of the same frames
    next((tmp_path / "files" / "UCF-101" / "move_up").glob("*.avi")).unlink()
    with pytest.raises(DataError, match="video listed in the split is missing"):
        build_ucf101({}, str(tmp_path / "files"))


def test_digits_attentive_probe_beats_the_linear_probe_on_the_same_frozen_backbone(run_cli, tmp_path):
    small = ["backbone.embed_dim=64", "backbone.depth=4", "backbone.num_heads=2", "transform.resize=32",
             "transform.crop=32"]
    out = tmp_path / "out"
    code, _, err = run_cli("run", "--backbone", "vit_tiny", "--task", "digits-linear", "--output", str(out),
                           "--cfg-options", *small)
    assert code == 0, err
    code, _, err = run_cli("run", "--backbone", "vit_tiny", "--task", "digits-attentive", "--output", str(out),
                           "--cfg-options", *small, "protocol.learning_rates=[0.003]", "train.max_iters=150")
    assert code == 0, err
    import json

    linear = json.loads(next(out.glob("vit_tiny/digits-linear/*/result.json")).read_text())
    attentive = json.loads(next(out.glob("vit_tiny/digits-attentive/*/result.json")).read_text())
    assert attentive["protocol"] == "attentive" and attentive["tables"]["lr_grid"][0]["lr"] == 0.003
    assert attentive["metrics"]["top1"] > linear["metrics"]["top1"] + 10, (attentive["metrics"], linear["metrics"])


@pytest.mark.parametrize("task, writer, frames", [("ucf101-attentive", write_synthetic_ucf101, False),
                                                  ("kinetics400-attentive", write_synthetic_kinetics400, True),
                                                  ("ssv2-attentive", write_synthetic_ssv2, False)])
def test_video_tasks_end_to_end(run_cli, tmp_path, task, writer, frames):
    root = writer(tmp_path / "data", n_train=8, n_val=4, frames=frames)
    record, _ = run_task(run_cli, task, root, tmp_path / "out")
    assert record["protocol"] == "attentive" and 0 <= record["metrics"]["top1"] <= 100
    val = record["dataset"]["splits"]["val"]
    assert val["videos"] == 4 and val["views"] == 2 and val["num_frames"] == 4
    assert record["dataset"]["splits"]["train"]["views"] == 1
    assert {row["lr"] for row in record["tables"]["lr_grid"]} == {0.001, 0.003}
