"""SSL data pipeline: multi-crop augmentation, blockwise iBOT masking and batch collation."""

from __future__ import annotations

import random
from functools import partial

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from dinobench.ssl.augment import (
    INTENDED_BLUR_PROBABILITIES,
    OFFICIAL_EFFECTIVE_BLUR_PROBABILITIES,
    MultiCropAugmentation,
    RandomGaussianBlur,
)
from dinobench.ssl.collate import collate_data_and_cast
from dinobench.ssl.masking import MaskingGenerator

TOY = dict(global_crops_size=32, local_crops_size=16, local_crops_number=4, patch_size=4)
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture(scope="module")
def digit() -> Image.Image:
    """A real 8x8 scikit-learn digit as a grayscale PIL image."""
    from sklearn.datasets import load_digits

    pixels = (load_digits().images[0] * (255.0 / 16.0)).round().astype(np.uint8)
    return Image.fromarray(pixels, mode="L")


@pytest.fixture(scope="module")
def china() -> Image.Image:
    """A real photograph shipped with scikit-learn, downsized to keep the tests fast."""
    from sklearn.datasets import load_sample_image

    return Image.fromarray(load_sample_image("china.jpg")).resize((160, 107), Image.BICUBIC)


def _blurs(transform) -> list[RandomGaussianBlur]:
    """The RandomGaussianBlur steps inside a (possibly nested) v2.Compose."""
    found = []
    for step in getattr(transform, "transforms", [transform]):
        if isinstance(step, RandomGaussianBlur):
            found.append(step)
        elif hasattr(step, "transforms"):
            found += _blurs(step)
    return found


# ----------------------------------------------------------------------------- augmentation


def test_crop_counts_shapes_dtypes_on_tiny_digit(digit):
    out = MultiCropAugmentation(**TOY)(digit)
    assert set(out) == {"global_crops", "global_crops_teacher", "local_crops"}
    assert len(out["global_crops"]) == 2 and len(out["local_crops"]) == 4
    for crop in out["global_crops"] + out["global_crops_teacher"]:
        assert type(crop) is torch.Tensor and crop.dtype == torch.float32 and crop.shape == (3, 32, 32)
    for crop in out["local_crops"]:
        assert type(crop) is torch.Tensor and crop.dtype == torch.float32 and crop.shape == (3, 16, 16)
    assert out["global_crops_teacher"][0] is out["global_crops"][0]  # teacher sees the student crops by default


def test_gram_teacher_crops_share_geometry_and_distortions(digit):
    aug = MultiCropAugmentation(**TOY, gram_teacher_crops_size=64)
    torch.manual_seed(3)
    out = aug(digit)
    assert [tuple(c.shape) for c in out["gram_teacher_crops"]] == [(3, 64, 64)] * 2
    assert [tuple(c.shape) for c in out["global_crops"]] == [(3, 32, 32)] * 2
    for gram, student in zip(out["gram_teacher_crops"], out["global_crops"]):
        # cut once at 64 px and distorted once: the student crop is the Gram crop resized to 32 px
        resized = TF.resize(gram, [32, 32], interpolation=TF.InterpolationMode.BICUBIC)
        torch.testing.assert_close(resized, student, atol=1e-4, rtol=0)
    assert not torch.allclose(out["gram_teacher_crops"][0][:, :32, :32], out["gram_teacher_crops"][1][:, :32, :32])


def test_gram_teacher_no_distortions_and_teacher_no_color_jitter(china):
    aug = MultiCropAugmentation(global_crops_size=32, local_crops_size=16, local_crops_number=2,
                                gram_teacher_crops_size=64, gram_teacher_no_distortions=True,
                                teacher_no_color_jitter=True)
    torch.manual_seed(0)
    out = aug(china)
    assert [tuple(c.shape) for c in out["global_crops_teacher"]] == [(3, 32, 32)] * 2
    assert [tuple(c.shape) for c in out["gram_teacher_crops"]] == [(3, 64, 64)] * 2
    for gram, teacher in zip(out["gram_teacher_crops"], out["global_crops_teacher"]):
        # both undistorted views of the same crop, at two resolutions
        down = TF.resize(gram, [32, 32], interpolation=TF.InterpolationMode.BICUBIC)
        assert torch.corrcoef(torch.stack([down.flatten(), teacher.flatten()]))[0, 1] > 0.97
    cross = torch.stack([out["global_crops_teacher"][0].flatten(), out["global_crops_teacher"][1].flatten()])
    assert torch.corrcoef(cross)[0, 1] < 0.97


def test_determinism_under_torch_seed_and_global_rngs_untouched(digit):
    aug = MultiCropAugmentation(**TOY, gram_teacher_crops_size=48)

    def run(torch_seed: int, py_seed: int) -> list[torch.Tensor]:
        torch.manual_seed(torch_seed)
        random.seed(py_seed)
        np.random.seed(py_seed)
        out = aug(digit)
        return out["global_crops"] + out["local_crops"] + out["gram_teacher_crops"]

    first, same, other = run(0, 1), run(0, 2), run(1, 1)
    assert all(torch.equal(a, b) for a, b in zip(first, same))  # Python/NumPy seeds play no part
    assert not all(torch.equal(a, b) for a, b in zip(first, other))
    state_py, state_np = random.getstate(), np.random.get_state()[1].copy()
    aug(digit)
    assert random.getstate() == state_py and np.array_equal(np.random.get_state()[1], state_np)


def test_global_crops_differ_and_are_normalised(china):
    aug = MultiCropAugmentation(global_crops_size=48, local_crops_size=16, local_crops_number=1)
    torch.manual_seed(0)
    crops1, crops2 = [], []
    for _ in range(24):
        out = aug(china)
        crops1.append(out["global_crops"][0])
        crops2.append(out["global_crops"][1])
        assert not torch.allclose(out["global_crops"][0], out["global_crops"][1])
    mean, std = torch.tensor(MEAN).view(3, 1, 1), torch.tensor(STD).view(3, 1, 1)
    for crop in crops1 + crops2:  # crops are cut/jittered as uint8, so de-normalised values lie in [0, 1]
        pixels = crop * std + mean
        assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5
    # averaged over crops, global crop 1 (no solarize) keeps the photo's statistics, normalised
    photo = torch.from_numpy(np.asarray(china, dtype=np.float32) / 255.0).permute(2, 0, 1)
    expected = (photo.mean((1, 2)) - torch.tensor(MEAN)) / torch.tensor(STD)
    observed = torch.stack(crops1).mean((0, 2, 3))
    assert torch.allclose(observed, expected, atol=0.3), (observed, expected)
    assert 0.4 < torch.stack(crops1).std() < 2.0


def test_custom_mean_std_are_applied(digit):
    aug = MultiCropAugmentation(**TOY, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    torch.manual_seed(0)
    crops = torch.stack(aug(digit)["global_crops"])
    assert crops.min() >= -2.0 - 1e-5 and crops.max() <= 2.0 + 1e-5
    assert crops.max() - crops.min() > 2.0  # a digit spans dark and bright pixels


def test_blur_and_solarize_wiring():
    aug = MultiCropAugmentation(**TOY)
    assert [b.p for b in _blurs(aug.global_transfo1)] == [INTENDED_BLUR_PROBABILITIES[0]] == [1.0]
    assert [b.p for b in _blurs(aug.global_transfo2)] == [0.1]
    assert [b.p for b in _blurs(aug.local_transfo)] == [0.5]
    official = MultiCropAugmentation(**TOY, blur_probabilities=OFFICIAL_EFFECTIVE_BLUR_PROBABILITIES)
    assert [b.p for b in _blurs(official.global_transfo1)] == [0.0]
    assert [b.p for b in _blurs(official.global_transfo2)] == [0.9]
    assert "RandomSolarize" in str(aug.global_transfo2) and "RandomSolarize" not in str(aug.global_transfo1)
    assert "RandomSolarize" not in str(aug.local_transfo)
    solarize = [t for t in aug.global_transfo2.transforms[-2].transforms if type(t).__name__ == "RandomSolarize"]
    assert len(solarize) == 1 and solarize[0].p == 0.2 and solarize[0].threshold == 128


def test_colour_jitter_and_grayscale_rates_on_a_flat_image():
    # a flat colour stays flat under crop/flip/blur, so only jitter/grayscale change it
    flat = Image.new("RGB", (24, 24), (200, 80, 40))
    aug = MultiCropAugmentation(global_crops_size=8, local_crops_size=8, local_crops_number=0)
    mean, std = torch.tensor(MEAN).view(3, 1, 1), torch.tensor(STD).view(3, 1, 1)
    torch.manual_seed(0)
    gray = unchanged = 0
    for _ in range(300):
        pixels = (aug(flat)["global_crops"][0] * std + mean) * 255
        assert torch.allclose(pixels, pixels[:, :1, :1].expand_as(pixels), atol=0.01)
        rgb = pixels[:, 0, 0]
        gray += bool(rgb.max() - rgb.min() < 0.5)
        unchanged += bool(torch.allclose(rgb, torch.tensor([200.0, 80.0, 40.0]), atol=0.5))
    assert 0.12 < gray / 300 < 0.28  # RandomGrayscale(p=0.2)
    assert 0.09 < unchanged / 300 < 0.24  # no jitter (0.2) and no grayscale (0.8): 0.16
    for transform in (aug.global_transfo1, aug.global_transfo2, aug.local_transfo):
        assert transform.transforms[-1] is aug.normalize  # normalisation comes last


def test_gaussian_blur_probability_and_small_images():
    noise = torch.rand(3, 16, 16)
    torch.manual_seed(0)
    assert all(not torch.equal(RandomGaussianBlur(p=1.0)(noise), noise) for _ in range(20))
    assert all(RandomGaussianBlur(p=0.0)(noise) is noise for _ in range(20))
    applied = sum(not torch.equal(RandomGaussianBlur(p=0.5)(noise), noise) for _ in range(200))
    assert 70 < applied < 130
    blurred = RandomGaussianBlur(p=1.0, radius_min=2.0, radius_max=2.0)(noise)
    assert blurred.std() < 0.6 * noise.std()  # sigma 2 px smooths 16 px noise strongly
    for size in (1, 2, 3, 4, 5):  # kernel shrinks to fit; no reflect-padding errors
        tiny = torch.rand(3, size, size)
        assert RandomGaussianBlur(p=1.0)(tiny).shape == tiny.shape
    pil = Image.fromarray((np.random.default_rng(0).random((6, 6, 3)) * 255).astype(np.uint8))
    assert RandomGaussianBlur(p=1.0)(pil).size == (6, 6)


def test_local_crops_subset_of_global_crops_are_patch_aligned(digit):
    aug = MultiCropAugmentation(**TOY, local_crops_subset_of_global_crops=True)
    torch.manual_seed(0)
    out = aug(digit)
    assert len(out["local_crops"]) == 4 and len(out["offsets"]) == 4
    assert all(c.shape == (3, 16, 16) for c in out["local_crops"])
    assert all(rx % 4 == 0 and ry % 4 == 0 and 0 <= rx <= 16 and 0 <= ry <= 16 for rx, ry in out["offsets"])


# ----------------------------------------------------------------------------- masking


def test_mask_count_is_exact_for_requests_up_to_half_the_grid():
    gen = MaskingGenerator((14, 14), max_num_patches=0.5 * 14 * 14)  # as the official train.py builds it
    rng = random.Random(0)
    for n in range(0, 99):
        for _ in range(3):
            mask = gen(n, rng=rng)
            assert mask.dtype == bool and mask.shape == (14, 14)
            assert int(mask.sum()) == n  # complete_mask_randomly tops up to exactly n


def test_blocks_alone_stay_within_and_close_to_the_request():
    gen = MaskingGenerator(14, max_num_patches=98)
    rng = np.random.default_rng(0)
    fractions = []
    for n in range(5, 99, 3):
        counts = [int(gen.mask_blocks(n, rng=rng).sum()) for _ in range(5)]
        assert max(counts) <= n
        fractions.append(np.mean(counts) / n)
    assert np.mean(fractions) > 0.95 and min(fractions) > 0.8


@pytest.mark.parametrize("min_num_patches", [4, 16])
def test_blocks_respect_aspect_and_size_bounds(min_num_patches):
    gen = MaskingGenerator((14, 14), min_num_patches=min_num_patches, max_num_patches=60)
    rng = random.Random(1)
    placed = 0
    for _ in range(300):
        h, w = gen.sample_block_shape(60, rng=rng)
        # h = round(sqrt(A r)), w = round(sqrt(A / r)) with A in [min, 60], r in [0.3, 1/0.3]
        assert (h + 0.5) / (w - 0.5) >= 0.3 and (h - 0.5) / (w + 0.5) <= 1 / 0.3
        assert (h + 0.5) * (w + 0.5) >= min_num_patches and (h - 0.5) * (w - 0.5) <= 60
        mask = np.zeros((14, 14), dtype=bool)
        if gen._mask(mask, 60, gen._source(rng)):  # one block on an empty grid: a filled rectangle
            rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
            bh, bw = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
            assert mask.sum() == bh * bw and bh < 14 and bw < 14 and bh * bw <= 60
            assert (bh + 0.5) / (bw - 0.5) >= 0.3 and (bh - 0.5) / (bw + 0.5) <= 1 / 0.3
            assert (bh + 0.5) * (bw + 0.5) >= min_num_patches
            placed += 1
    assert placed > 250


def test_masking_determinism_and_zero_request():
    gen = MaskingGenerator((14, 14), max_num_patches=98)
    for make in (random.Random, np.random.default_rng):
        a = [gen(40, rng=r) for r in [make(7)] for _ in range(5)]
        b = [gen(40, rng=r) for r in [make(7)] for _ in range(5)]
        c = [gen(40, rng=r) for r in [make(8)] for _ in range(5)]
        assert all(np.array_equal(x, y) for x, y in zip(a, b))
        assert not all(np.array_equal(x, y) for x, y in zip(a, c))
    seeded = MaskingGenerator((6, 10), max_num_patches=30, rng=random.Random(3))
    again = MaskingGenerator((6, 10), max_num_patches=30, rng=random.Random(3))
    assert np.array_equal(seeded(25), again(25)) and seeded(25).shape == (6, 10)
    torch.manual_seed(5)
    x = gen(50)
    torch.manual_seed(5)
    assert np.array_equal(x, gen(50))  # the default RNG is seeded from torch
    zero = gen(0)
    assert zero.dtype == bool and zero.shape == (14, 14) and not zero.any()
    with pytest.raises(ValueError):
        gen(14 * 14 + 1, rng=random.Random(0))


# ----------------------------------------------------------------------------- collate


def _constant_samples(batch: int, n_local: int = 3, gram: bool = True) -> list[tuple[dict, int]]:
    """Samples whose crop ``i`` of sample ``j`` is filled with ``10 * j + i`` (exact in bfloat16)."""
    samples = []
    for j in range(batch):
        crops = {
            "global_crops": [torch.full((3, 8, 8), 10.0 * j + i) for i in range(2)],
            "local_crops": [torch.full((3, 4, 4), 10.0 * j + i) for i in range(n_local)],
        }
        if gram:
            crops["gram_teacher_crops"] = [torch.full((3, 12, 12), 10.0 * j + i) for i in range(2)]
        samples.append((crops, j % 10))
    return samples


def _collate(samples, rng, **kw):
    gen = MaskingGenerator((14, 14), max_num_patches=98)
    args = dict(mask_ratio_tuple=(0.1, 0.5), mask_probability=0.5, dtype=torch.float32, n_tokens=196,
                mask_generator=gen, rng=rng)
    return collate_data_and_cast(samples, **{**args, **kw})


def test_collate_shapes_dtypes_and_crop_major_order():
    B = 5
    out = _collate(_constant_samples(B), random.Random(0), dtype=torch.bfloat16)
    assert out["collated_global_crops"].shape == (2 * B, 3, 8, 8)
    assert out["collated_local_crops"].shape == (3 * B, 3, 4, 4)
    assert out["collated_gram_teacher_crops"].shape == (2 * B, 3, 12, 12)
    for key in ("collated_global_crops", "collated_local_crops", "collated_gram_teacher_crops"):
        assert out[key].dtype == torch.bfloat16
        values = out[key].float().flatten(1)
        assert (values == values[:, :1]).all()
        n_crops = values.shape[0] // B
        expected = [10.0 * j + i for i in range(n_crops) for j in range(B)]  # crop-major
        assert values[:, 0].tolist() == expected
    assert out["collated_masks"].shape == (2 * B, 196) and out["collated_masks"].dtype == torch.bool
    assert "collated_gram_teacher_crops" not in _collate(_constant_samples(2, gram=False), random.Random(0))


@pytest.mark.parametrize("batch,prob", [(8, 0.5), (7, 0.3), (4, 1.0)])
def test_collate_mask_ratios_counts_and_weights(batch, prob):
    out = _collate(_constant_samples(batch), random.Random(batch), mask_probability=prob)
    masks = out["collated_masks"]
    B = 2 * batch
    n_masked = int(B * prob)
    counts = masks.sum(1)
    assert int((counts > 0).sum()) == n_masked
    targets = [int(196 * p) for p in torch.linspace(0.1, 0.5, n_masked + 1)[1:]]
    assert sorted(counts[counts > 0].tolist()) == sorted(targets)
    assert all(0.1 * 196 < t <= 0.5 * 196 for t in targets) and targets[-1] == int(0.5 * 196)
    assert out["upperbound"] == sum(targets) and int(counts.sum()) <= out["upperbound"]
    assert torch.equal(out["mask_indices_list"], torch.from_numpy(np.flatnonzero(masks.flatten().numpy())))
    assert out["n_masked_patches"].dtype == torch.long and out["n_masked_patches"].tolist() == [int(counts.sum())]
    per_token = (1.0 / counts.float()).unsqueeze(1).expand_as(masks)[masks]
    torch.testing.assert_close(out["masks_weight"], per_token)
    assert out["masks_weight"].shape == out["mask_indices_list"].shape
    torch.testing.assert_close(out["masks_weight"].sum(), torch.tensor(float(n_masked)))


def test_collate_determinism_and_shuffle():
    samples = _constant_samples(6)
    first = _collate(samples, random.Random(11), random_circular_shift=True)
    again = _collate(samples, random.Random(11), random_circular_shift=True)
    assert torch.equal(first["collated_masks"], again["collated_masks"])
    other = _collate(samples, np.random.default_rng(12), random_circular_shift=True)
    assert not torch.equal(first["collated_masks"], other["collated_masks"])
    assert sorted(other["collated_masks"].sum(1).tolist()) == sorted(first["collated_masks"].sum(1).tolist())
    positions = {tuple(_collate(samples, random.Random(s))["collated_masks"].any(1).tolist()) for s in range(8)}
    assert len(positions) > 1  # which samples are masked is shuffled
    torch.manual_seed(4)
    a = _collate(samples, None)["collated_masks"]
    torch.manual_seed(4)
    assert torch.equal(a, _collate(samples, None)["collated_masks"])  # rng=None follows torch's seed


def test_collate_local_batch_size_inferred_tokens_and_no_locals():
    out = _collate(_constant_samples(6), random.Random(0), local_batch_size=3, n_tokens=None)
    assert out["collated_masks"].shape == (6, 196)
    assert int((out["collated_masks"].sum(1) > 0).sum()) == 3
    out = _collate(_constant_samples(2, n_local=0), random.Random(0))
    assert out["collated_local_crops"].shape[0] == 0


@pytest.mark.parametrize("world", [2, 3])
def test_collate_ranks_keep_their_rows_of_the_global_batch_masks(world):
    batch = 4
    samples = _constant_samples(batch * world)
    whole = _collate(samples, random.Random(5))
    parts = [_collate(samples[r * batch:(r + 1) * batch], random.Random(5), world_size=world, rank=r)
             for r in range(world)]
    for r, part in enumerate(parts):
        rows = [c * batch * world + r * batch + i for c in range(2) for i in range(batch)]
        assert torch.equal(part["collated_masks"], whole["collated_masks"][rows])
        assert part["collated_global_crops"].shape[0] == 2 * batch
        assert part["n_masked_patches"].item() == part["mask_indices_list"].numel() == part["collated_masks"].sum()
        assert part["upperbound"] == int(part["collated_masks"].sum())  # exact counts up to half the grid
    assert sum(p["upperbound"] for p in parts) == whole["upperbound"]
    with pytest.raises(ValueError, match="rank 2"):
        _collate(samples[:batch], random.Random(5), world_size=2, rank=2)
    with pytest.raises(ValueError, match="seeded alike"):
        _collate(samples[:batch], None, world_size=2, rank=0)


def test_training_collate_is_seeded_by_iteration_and_rank_invariant():
    from dinobench.ssl.data import IterationCollate

    crops_cfg, ibot_cfg = {"global_crops_size": 112}, {"mask_ratio_min_max": [0.1, 0.5], "mask_sample_probability": 0.5}
    samples = [(crops, label, 7) for crops, label in _constant_samples(6)]
    whole = IterationCollate(crops_cfg, ibot_cfg, patch_size=8, seed=0)(samples)
    assert whole["iteration"] == 7 and whole["collated_masks"].shape == (12, 196)
    assert "collated_gram_teacher_crops" in whole
    halves = [IterationCollate(crops_cfg, ibot_cfg, 8, 0, rank=r, world_size=2)(samples[3 * r:3 * r + 3])
              for r in range(2)]
    merged = torch.cat([torch.cat([h["collated_masks"][c * 3:(c + 1) * 3] for h in halves]) for c in range(2)])
    assert torch.equal(merged, whole["collated_masks"])
    again = IterationCollate(crops_cfg, ibot_cfg, 8, 0)(samples)
    assert torch.equal(again["collated_masks"], whole["collated_masks"])
    later = IterationCollate(crops_cfg, ibot_cfg, 8, 0)([(c, label, 8) for c, label, _ in samples])
    assert not torch.equal(later["collated_masks"], whole["collated_masks"])


class _CropDataset(torch.utils.data.Dataset):
    """``(crops_dict, label)`` samples, as the SSL trainer's dataset yields them."""

    def __init__(self, images: list[Image.Image], transform):
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.transform(self.images[index]), index


def test_dataloader_end_to_end_is_reproducible(digit):
    aug = MultiCropAugmentation(**TOY)
    gen = MaskingGenerator((8, 8), max_num_patches=32)
    collate = partial(collate_data_and_cast, mask_ratio_tuple=(0.1, 0.5), mask_probability=0.5,
                      dtype=torch.float32, n_tokens=64, mask_generator=gen)
    dataset = _CropDataset([digit] * 6, aug)

    def batches(seed: int) -> list[dict]:
        loader = torch.utils.data.DataLoader(dataset, batch_size=3, num_workers=1, collate_fn=collate,
                                             generator=torch.Generator().manual_seed(seed),
                                             multiprocessing_context="fork")
        return list(loader)

    one, two, three = batches(0), batches(0), batches(1)
    assert len(one) == 2 and one[0]["collated_global_crops"].shape == (6, 3, 32, 32)
    assert one[0]["collated_local_crops"].shape == (12, 3, 16, 16) and one[0]["collated_masks"].shape == (6, 64)
    for a, b in zip(one, two):
        assert all(torch.equal(a[k], b[k]) for k in ("collated_global_crops", "collated_local_crops", "collated_masks"))
    assert not torch.equal(one[0]["collated_global_crops"], three[0]["collated_global_crops"])
    assert not torch.equal(one[0]["collated_global_crops"], one[1]["collated_global_crops"])
