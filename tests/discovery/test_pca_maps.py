"""PCA maps (the paper's rainbow figures): the mapping equals the official notebook's recipe (whitened 3-component
scikit-learn PCA, ``sigmoid(2 x)``, background black), ``--save-predictions`` writes them for a task with images
and the report embeds them, and ``dinobench visualize`` writes one per user image."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from sklearn.decomposition import PCA

from dinobench.synthetic.retrieval import write_synthetic_foreground
from dinobench.visualize import pca_map
from conftest import TINY_OPTIONS


def test_pca_map_is_the_notebook_recipe():
    rng = np.random.default_rng(0)
    patches = rng.normal(size=(4, 5, 16))
    foreground = rng.uniform(size=(4, 5)) > 0.3
    image = np.asarray(pca_map(patches, foreground)).astype(np.float64)
    flat = patches.reshape(-1, 16)
    pca = PCA(n_components=3, whiten=True).fit(flat[foreground.ravel()])
    expected = 1 / (1 + np.exp(-2 * pca.transform(flat))) * foreground.reshape(-1, 1)
    np.testing.assert_allclose(image.reshape(-1, 3), np.round(expected * 255), atol=1)
    assert (image[~foreground] == 0).all()


def test_save_predictions_writes_pca_maps_and_the_report_embeds_them(run_cli, tmp_path):
    out = tmp_path / "out"
    code, _, err = run_cli("run", "--backbone", "vit_tiny", "--task", "digits-knn", "--output", str(out),
                           "--save-predictions", "--cfg-options", *TINY_OPTIONS)
    assert code == 0, err
    (run_dir,) = out.glob("vit_tiny/digits-knn/*")
    import json

    record = json.loads((run_dir / "result.json").read_text())
    assert [a for a in record["artifacts"] if "pca_" in a] == [f"predictions/pca_val_{i:03d}.png" for i in range(4)]
    figure = Image.open(run_dir / "predictions" / "pca_val_000.png")
    assert figure.width > 1.5 * figure.height  # image | PCA side by side (under a title bar)
    code, _, err = run_cli("report", str(out), "--output", str(tmp_path / "report"), "--format", "html")
    assert code == 0, err
    html = (tmp_path / "report" / "report.html").read_text()
    assert "predictions/pca_val_000.png" in html and "data:image/png;base64," in html


def test_visualize_writes_one_figure_per_image(run_cli, tmp_path):
    root = write_synthetic_foreground(tmp_path / "fg", n_train=2, n_val=3, size=48)
    single = root / "train" / "images" / "00000.png"
    out = tmp_path / "maps"
    code, stdout, err = run_cli("visualize", "--backbone", "vit_tiny", "--output", str(out), "--size", "48",
                                str(root / "val" / "images"), str(single), "--cfg-options", *TINY_OPTIONS)
    assert code == 0, err
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(["00000_pca.png", "00000__pca.png", "00001_pca.png", "00002_pca.png"])  # same stem kept twice
    assert stdout.count("_pca.png") == 4
    code, _, err = run_cli("visualize", "--backbone", "vit_tiny", str(tmp_path / "missing.jpg"))
    assert code == 2 and "missing.jpg: no such image file or folder" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli("visualize", "--backbone", "vit_tiny", str(single), "--cfg-options", "protocol.x=1")
    assert code == 2 and "backbone.* overrides only" in err


@pytest.mark.parametrize("what", ["commands"])
def test_visualize_is_listed(run_cli, what):
    code, out, _ = run_cli("list", what)
    assert code == 0 and "visualize" in out
