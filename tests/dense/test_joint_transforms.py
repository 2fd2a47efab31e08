"""The one joint-transform system (dinobench.data.joint): targets move with the image, each kind with its kernel,
and every family's transform is built from it."""

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from dinobench.data.canopy import CanopyTransform
from dinobench.data.dense_transforms import (build_depth_eval_transform, build_depth_train_transform,
                                             build_seg_eval_transform, build_seg_train_transform)
from dinobench.data.joint import JointTransform, PadTo, RandomCrop, RandomRotation, Rescale, unwrap, wrap
from dinobench.data.square import SquareTransform
from dinobench.data.video import ClipTransform

IDENTITY = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # mean, std: normalisation leaves the pixels as they are


def _coded(h=37, w=53, seed=0):
    """An image whose channel 0 encodes its mask (mask / 10), so any geometric step must keep them equal."""
    mask = torch.randint(0, 5, (h, w), generator=torch.Generator().manual_seed(seed))
    image = torch.rand(3, h, w, generator=torch.Generator().manual_seed(seed + 1))
    image[0] = mask.float() / 10
    return image, mask


def test_family_transforms_are_pipelines_of_the_joint_system():
    mean, std = IDENTITY
    for transform in (build_seg_train_transform({}, mean, std), build_seg_eval_transform({}, mean, std),
                      build_depth_train_transform({}, mean, std), build_depth_eval_transform({}, mean, std),
                      CanopyTransform(mean, std, train=True, crop_size=8)):
        assert isinstance(transform, JointTransform) and isinstance(transform.pipeline, v2.Compose)


@pytest.mark.parametrize("seed", range(8))
def test_segmentation_crop_flip_and_pad_move_the_mask_with_the_image(seed):
    image, mask = _coded()
    transform = build_seg_train_transform({"scale": None, "ratio_range": [1.0, 1.0], "crop_size": [24, 70],
                                           "cat_max_ratio": 0.75,
                                           "photometric": False, "ignore_index": 255}, *IDENTITY)
    torch.manual_seed(seed)
    out = transform({"image": image, "mask": mask, "name": "a"})
    assert out["image"].shape == (3, 24, 70) and out["mask"].shape == (24, 70) and out["name"] == "a"
    padded = out["mask"] == 255  # 53 px wide: the crop is padded on the right (image 0, mask ignore)
    assert padded[:, 53:].all() and not padded[:, :53].any() and (out["image"][:, :, 53:] == 0).all()
    assert torch.equal((out["image"][0][~padded] * 10).round().long(), out["mask"][~padded])


def test_resize_uses_bilinear_for_images_and_nearest_for_masks():
    image, mask = _coded(20, 30)
    out = JointTransform([Rescale(lambda h, w, r: (40, 60))])({"image": image, "mask": mask})
    assert out["mask"].dtype == torch.long and set(out["mask"].unique().tolist()) <= set(mask.unique().tolist())
    assert torch.equal(out["mask"][::2, ::2], mask)  # nearest: every value is a source value, none invented
    assert not torch.equal((out["image"][0] * 10).round().long(), out["mask"])  # bilinear blends at the edges


def test_evaluation_resizes_the_image_only():
    image, mask = _coded(20, 30)
    out = build_seg_eval_transform({"scale": 40}, *IDENTITY)({"image": image, "mask": mask})
    assert out["image"].shape == (3, 40, 60) and torch.equal(out["mask"], mask)
    depth = torch.rand(20, 30)
    out = build_depth_eval_transform({"scale": 40}, *IDENTITY)({"image": image, "depth": depth})
    assert out["image"].shape == (3, 40, 60) and torch.equal(out["depth"], depth)


def test_rotation_and_random_crop_keep_depth_and_image_aligned():
    depth = torch.arange(1, 40 * 50 + 1, dtype=torch.float32).reshape(40, 50)
    image = depth.expand(3, 40, 50) / depth.max()
    steps = [RandomRotation(10.0, p=1.0), v2.RandomHorizontalFlip(1.0), PadTo((48, 56)), RandomCrop((48, 56))]
    torch.manual_seed(3)
    out = JointTransform(steps)({"image": image, "depth": depth})
    assert out["depth"].shape == (48, 56) and out["image"].shape == (3, 48, 56)
    valid = out["depth"] > 0
    assert valid.float().mean() > 0.5 and not valid.all()  # rotated corners and the padding are 0 (invalid) in both
    assert set(out["depth"][valid].tolist()) <= set(depth.flatten().tolist())  # nearest: source values only
    assert not valid[out["image"][0] == 0].any()  # where the image has no source pixel, the depth has none either


def test_boxes_follow_the_flip_and_the_canvas():
    sample = wrap({"image": torch.zeros(3, 20, 40), "boxes": torch.tensor([[2.0, 3.0, 12.0, 8.0]])})
    assert tuple(sample["boxes"].canvas_size) == (20, 40)
    flipped = unwrap(v2.RandomHorizontalFlip(1.0)(sample))
    assert flipped["boxes"].tolist() == [[28.0, 3.0, 38.0, 8.0]] and type(flipped["boxes"]) is torch.Tensor


def test_canopy_flips_and_crops_heights_with_the_image():
    image, mask = _coded(30, 30)
    for seed in range(6):
        torch.manual_seed(seed)
        out = CanopyTransform(*IDENTITY, train=True, crop_size=16)({"image": image, "height": mask.float()})
        assert out["height"].shape == (16, 16) and torch.equal((out["image"][0] * 10).round(), out["height"])


def test_a_clip_shares_one_crop_over_its_frames_and_pairs_images_are_square():
    frame = Image.fromarray((np.random.default_rng(0).random((30, 44, 3)) * 255).astype(np.uint8))
    clip = ClipTransform(24, 20, *IDENTITY)([frame, frame, frame], crop_index=2, n_crops=3)
    assert clip.shape == (3, 3, 20, 20) and torch.equal(clip[0], clip[2]) and type(clip) is torch.Tensor
    left = ClipTransform(24, 20, *IDENTITY)([frame], crop_index=0, n_crops=3)
    assert not torch.equal(left[0], clip[0])  # another of the three crops along the longer side
    square = SquareTransform(28, *IDENTITY)(frame)
    assert square.shape == (3, 28, 28) and 0.0 <= float(square.min()) and float(square.max()) <= 1.0


def test_the_seg_eval_resize_can_be_bicubic_as_the_dinotxt_notebook():
    """ade20k-zeroshot resizes as notebooks/dinotxt_segmentation_inference.ipynb (ShortSideResize, bicubic)."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as F2

    from dinobench.resolve import resolve_task

    image, mask = torch.rand(3, 40, 60, generator=torch.Generator().manual_seed(0)), torch.zeros(40, 60).long()
    out = {mode: build_seg_eval_transform({"scale": 24, "interpolation": mode}, *IDENTITY)(
        {"image": image, "mask": mask})["image"] for mode in ("bilinear", "bicubic")}
    assert out["bicubic"].shape == (3, 24, 36) and not torch.equal(out["bicubic"], out["bilinear"])
    torch.testing.assert_close(out["bicubic"], F2.resize(image, [24, 36], interpolation=InterpolationMode.BICUBIC,
                                                         antialias=True))
    assert resolve_task("ade20k-zeroshot", None)["transform"]["eval"]["interpolation"] == "bicubic"
