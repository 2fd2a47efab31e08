"""Image <-> text retrieval: recall@K against brute force and hand cases, the Karpathy split reader, and the
csv-retrieval task end to end with a dino.txt checkpoint in the released layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from dinobench.text.captions import build_karpathy_captions
from dinobench.errors import DataError
from dinobench.protocols.retrieval_text import recall_at_k


def test_recall_at_k_hand_case_and_brute_force():
    image = torch.eye(3)
    text = torch.tensor([[1.0, 0, 0], [0, 0, 1.0], [0, 1.0, 0], [0.9, 0.1, 0]])  # captions of images 0, 1, 2, 0
    out = recall_at_k(image, text, [0, 1, 2, 0], ks=[1, 2])
    # i2t: image 0 -> caption 0 (its own); image 1 -> caption 2 (image 2's), then 3/1; image 2 -> caption 1 (image 1's)
    assert out["i2t_R@1"] == pytest.approx(100 / 3) and out["t2i_R@1"] == pytest.approx(50.0)
    gen = torch.Generator().manual_seed(0)
    image = torch.nn.functional.normalize(torch.randn(20, 8, generator=gen), dim=-1)
    owner = [i // 2 for i in range(40)]
    text = torch.nn.functional.normalize(image[owner] + 0.8 * torch.randn(40, 8, generator=gen), dim=-1)
    got = recall_at_k(image, text, owner, ks=[1, 5], chunk_size=7)
    sims = image @ text.T
    for k in (1, 5):
        i2t = sum(any(owner[j] == i for j in sims[i].topk(k).indices.tolist()) for i in range(20)) / 20 * 100
        t2i = sum(j_owner in sims[:, j].topk(k).indices.tolist() for j, j_owner in enumerate(owner)) / 40 * 100
        assert got[f"i2t_R@{k}"] == pytest.approx(i2t) and got[f"t2i_R@{k}"] == pytest.approx(t2i)


def test_karpathy_split_reader(tmp_path):
    (tmp_path / "flickr30k-images").mkdir()
    images = []
    for i, split in enumerate(["train", "train", "test", "val"]):
        Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(tmp_path / "flickr30k-images" / f"{i}.jpg")
        images.append({"filename": f"{i}.jpg", "split": split,
                       "sentences": [{"raw": f"picture {i} caption {k}"} for k in range(2)]})
    (tmp_path / "dataset_flickr30k.json").write_text(json.dumps({"images": images}))
    splits = build_karpathy_captions({}, str(tmp_path))
    assert len(splits["train"]) == 4 and splits["train"].num_images == 2
    assert [c for _, c, _ in splits["val"].items] == ["picture 2 caption 0", "picture 2 caption 1"]
    with pytest.raises(DataError, match="no Karpathy split file"):
        build_karpathy_captions({}, str(tmp_path / "flickr30k-images"))


def test_csv_retrieval_runs_with_a_released_layout_head(run_cli, tmp_path):
    from dinobench.backbones import create_backbone
    from dinobench.text import build_dinotxt
    from dinobench.text.train import head_state
    from dinobench.utils.seeding import seed_everything

    for i in range(6):
        Image.new("RGB", (16, 16), (40 * i, 255 - 40 * i, 90)).save(tmp_path / f"{i}.png")
    rows = "".join(f"{i}.png,a colour swatch number {i}\n{i}.png,swatch {i}\n" for i in range(6))
    for split in ("train", "val"):
        (tmp_path / f"{split}.csv").write_text("image_path,caption\n" + rows)
    seed_everything(0)
    backbone = create_backbone("vit_tiny", embed_dim=64, depth=2, num_heads=2)
    model = build_dinotxt(backbone, embed_dim=128, text_dim=32, text_heads=2, text_layers=1, context_length=16)
    torch.save(head_state(model), tmp_path / "head.pth")
    code, _, err = run_cli("run", "--backbone", "vit_tiny", "--task", "csv-retrieval", "--data-root", str(tmp_path),
                           "--output", str(tmp_path / "out"), "--cfg-options", "backbone.embed_dim=64",
                           "backbone.depth=2", "backbone.num_heads=2", f"protocol.head_weights={tmp_path / 'head.pth'}",
                           "protocol.model.embed_dim=128", "protocol.model.text_dim=32", "protocol.model.text_heads=2",
                           "protocol.model.text_layers=1", "protocol.model.context_length=16", "transform.resize=32",
                           "transform.crop=32")
    assert code == 0, err
    (path,) = Path(tmp_path / "out").glob("vit_tiny/csv-retrieval/*/result.json")
    record = json.loads(path.read_text())
    metrics = record["metrics"]
    assert set(metrics) == {f"{d}_R@{k}" for d in ("i2t", "t2i") for k in (1, 5, 10)} | {"mean_recall"}
    assert metrics["i2t_R@10"] == 100.0 and metrics["t2i_R@10"] == 100.0  # 6 images: every one is in the top 10
    assert 0 <= metrics["i2t_R@1"] <= 100 and record["dataset"]["splits"]["val"]["images"] == 6
