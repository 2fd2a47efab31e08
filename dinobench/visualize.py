"""Pictures of dense predictions: colourised masks and depth maps, and one side-by-side PNG
(image | ground truth | prediction) that ``--save-predictions`` writes and the report embeds."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw

IGNORE_COLOUR = (0, 0, 0)
INVALID_DEPTH_COLOUR = (0, 0, 0)


def palette(num_classes: int) -> np.ndarray:
    """Fixed uint8 [num_classes, 3] palette: the bits of ``k + 1`` spread over R, G, B high bits
    (the PASCAL VOC scheme), so every class keeps its colour in every figure and black stays free."""
    colours = np.zeros((num_classes, 3), dtype=np.uint8)
    for k in range(num_classes):
        code, rgb = k + 1, [0, 0, 0]
        for shift in range(7, -1, -1):
            for channel in range(3):
                rgb[channel] |= ((code >> channel) & 1) << shift
            code >>= 3
        colours[k] = rgb
    return colours


def colorize_mask(mask: np.ndarray, num_classes: int, ignore_index: int = 255) -> Image.Image:
    """Class-id map [H, W] -> RGB image; ``ignore_index`` (and ids outside the classes) are black."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"colorize_mask expects an [H, W] class map, got shape {mask.shape}")
    lut = np.zeros((num_classes + 1, 3), dtype=np.uint8)
    lut[:num_classes] = palette(num_classes)
    lut[num_classes] = IGNORE_COLOUR
    ids = mask.astype(np.int64)
    ids = np.where((ids < 0) | (ids >= num_classes) | (ids == ignore_index), num_classes, ids)
    return Image.fromarray(lut[ids], mode="RGB")


def colorize_depth(depth: np.ndarray, vmin: float | None = None, vmax: float | None = None,
                   cmap: str = "magma_r") -> Image.Image:
    """Depth map [H, W] -> RGB with a perceptual matplotlib colormap (near = bright by default).

    The range defaults to the 2nd..98th percentile of the valid pixels (finite, > 0); invalid
    pixels are black. Give the same ``vmin``/``vmax`` to ground truth and prediction to compare them.
    """
    from matplotlib import colormaps

    depth = np.asarray(depth, dtype=np.float64)
    if depth.ndim != 2:
        raise ValueError(f"colorize_depth expects an [H, W] depth map, got shape {depth.shape}")
    valid = np.isfinite(depth) & (depth > 0)
    values = depth[valid]
    lo = vmin if vmin is not None else (float(np.percentile(values, 2)) if values.size else 0.0)
    hi = vmax if vmax is not None else (float(np.percentile(values, 98)) if values.size else 1.0)
    scaled = np.clip((np.where(valid, depth, lo) - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    rgb = colormaps[cmap](scaled, bytes=True)[..., :3]
    rgb[~valid] = INVALID_DEPTH_COLOUR
    return Image.fromarray(np.ascontiguousarray(rgb), mode="RGB")


def fit_pca(rows: np.ndarray, n_components: int = 3) -> Any:
    """A whitened PCA (scikit-learn) of feature rows ``[N, D]``, the official PCA notebook's choice."""
    from sklearn.decomposition import PCA

    rows = np.asarray(rows, dtype=np.float64)
    return PCA(n_components=min(n_components, rows.shape[1], len(rows)), whiten=True, random_state=0).fit(rows)


def pca_map(patches: np.ndarray, foreground: np.ndarray | None = None, pca: Any = None) -> Image.Image:
    """The DINOv3 "rainbow" figure of patch features ``[h, w, D]``: a whitened 3-component PCA - ``pca`` (e.g. fitted
    on several images, so colours agree between them) or fitted here on the foreground patches (all when there is
    no ``foreground`` or fewer than 3) - applied to every patch, ``sigmoid(2 x)`` as RGB (the official PCA
    notebook's mapping); background patches are black. One pixel per patch."""
    patches = np.asarray(patches, dtype=np.float64)
    if patches.ndim != 3:
        raise ValueError(f"pca_map expects patch features [h, w, D], got shape {patches.shape}")
    h, w, dim = patches.shape
    flat = patches.reshape(-1, dim)
    keep = None if foreground is None else np.asarray(foreground, dtype=bool).reshape(-1)
    if pca is None:
        pca = fit_pca(flat[keep] if keep is not None and keep.sum() >= 3 else flat)
    projected = np.zeros((h * w, 3))
    components = pca.transform(flat)
    projected[:, :components.shape[1]] = components
    rgb = 1.0 / (1.0 + np.exp(-2.0 * projected))
    if keep is not None:
        rgb *= keep[:, None]
    return Image.fromarray((rgb.reshape(h, w, 3) * 255).round().astype(np.uint8), mode="RGB")


def colorize_scores(scores: np.ndarray, cmap: str = "viridis") -> Image.Image:
    """Scores ``[H, W]`` in [0, 1] (e.g. foreground probabilities) -> RGB with a matplotlib colormap."""
    from matplotlib import colormaps

    scores = np.clip(np.nan_to_num(np.asarray(scores, dtype=np.float64)), 0.0, 1.0)
    return Image.fromarray(np.ascontiguousarray(colormaps[cmap](scores, bytes=True)[..., :3]), mode="RGB")


def draw_boxes(image: Image.Image, boxes: np.ndarray, labels: Sequence[int], num_classes: int,
               scores: Sequence[float] | None = None, names: Sequence[str] | None = None) -> Image.Image:
    """A copy of ``image`` with XYXY ``boxes`` outlined in their class colour, captioned with the class name (and
    score)."""
    from PIL import ImageDraw

    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    colours = palette(max(num_classes, 1))
    for i, (box, label) in enumerate(zip(np.asarray(boxes, dtype=float).reshape(-1, 4), labels)):
        colour = tuple(int(c) for c in colours[int(label) % len(colours)])
        x0, y0, x1, y1 = (float(v) for v in box)
        draw.rectangle([x0, y0, max(x1, x0), max(y1, y0)], outline=colour, width=max(1, out.width // 200))
        caption = names[int(label)] if names is not None and int(label) < len(names) else str(int(label))
        if scores is not None:
            caption = f"{caption} {float(scores[i]):.2f}"
        draw.text((x0 + 1, y0 + 1), caption, fill=colour)
    return out


def denormalize_image(image: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> Image.Image:
    """A normalised float [3, H, W] array (``(x - mean) / std``) back to a viewable RGB image."""
    image = np.asarray(image, dtype=np.float64)
    pixels = image * np.asarray(std).reshape(3, 1, 1) + np.asarray(mean).reshape(3, 1, 1)
    return Image.fromarray((np.clip(pixels, 0, 1) * 255).round().astype(np.uint8).transpose(1, 2, 0), mode="RGB")


def side_by_side(panels: list[tuple[str, Image.Image]], path: str | Path, height: int | None = None) -> Path:
    """Write ``panels`` (title, image) left to right, each under its title, as one PNG at ``path``.

    Panels are resized (nearest, so class borders stay crisp) to a common ``height`` (default: the
    tallest panel's). The file is written atomically.
    """
    from dinobench.utils.io import write_atomic

    if not panels:
        raise ValueError("side_by_side needs at least one (title, image) panel")
    height = int(height or max(img.height for _, img in panels))
    title_h, gap = 14, 4
    resized = []
    for title, img in panels:
        width = max(1, round(img.width * height / img.height))
        resized.append((str(title), img.convert("RGB").resize((width, height), Image.NEAREST)))
    total_w = sum(img.width for _, img in resized) + gap * (len(resized) + 1)
    canvas = Image.new("RGB", (total_w, height + title_h + 2 * gap), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    x = gap
    for title, img in resized:
        draw.text((x, gap // 2), title, fill=(0, 0, 0))
        canvas.paste(img, (x, gap + title_h))
        x += img.width + gap
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return write_atomic(Path(path), lambda fh: fh.write(buffer.getvalue()))
