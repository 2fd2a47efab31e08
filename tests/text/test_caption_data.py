"""Caption data for dino.txt: COCO Captions json, caption CSV and class-name prompts; bad input is one line or a
counted skip."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from dinobench.text.captions import ClassPromptCaptions, build_caption_csv, build_coco_captions
from dinobench.synthetic.coco import write_synthetic_coco
from dinobench.errors import DataError


def _coco_captions(root, captions_per_image=2):
    write_synthetic_coco(root, n_train=3, n_val=2)
    for folder in ("train2017", "val2017"):
        images = json.loads((root / "annotations" / f"instances_{folder}.json").read_text())["images"]
        anns = [{"id": 10 * img["id"] + k, "image_id": img["id"], "caption": f"shapes on noise number {k}"}
                for img in images for k in range(captions_per_image)]
        (root / "annotations" / f"captions_{folder}.json").write_text(json.dumps({"images": images, "annotations": anns}))
    return root


def test_coco_captions_group_captions_by_image_and_count_bad_ones(tmp_path):
    root = _coco_captions(tmp_path / "coco")
    splits = build_coco_captions({}, str(root))
    train = splits["train"]
    assert len(train) == 6 and train.num_images == 3 and [i for _, _, i in train.items] == [0, 0, 1, 1, 2, 2]
    sample = train[0]
    assert isinstance(sample["image"], Image.Image) and sample["caption"] == "shapes on noise number 0"
    path = root / "annotations" / "captions_val2017.json"
    payload = json.loads(path.read_text())
    payload["annotations"][0]["caption"] = "   "
    payload["annotations"][1]["caption"] = " ".join(["word"] * 120)
    path.write_text(json.dumps(payload))
    val = build_coco_captions({}, str(root))["val"]
    assert val.describe()["skipped"] == 1 and val.describe()["truncated"] == 1 and len(val) == 3
    payload["annotations"].append({"id": 1, "image_id": 999, "caption": "x"})
    path.write_text(json.dumps(payload))
    with pytest.raises(DataError, match="unknown image_id 999"):
        build_coco_captions({}, str(root))
    payload["annotations"].pop()
    path.write_text(json.dumps(payload))
    (root / "val2017" / payload["images"][0]["file_name"]).unlink()
    with pytest.raises(DataError, match=r"captions_val2017.json: 1 captioned images are missing") as err:
        build_coco_captions({}, str(root))
    assert "\n" not in str(err.value)
    path.unlink()
    with pytest.raises(DataError, match="caption file missing"):
        build_coco_captions({}, str(root))


def test_caption_csv_reads_rows_and_rejects_bad_files(tmp_path):
    for name in ("a.png", "b.png"):
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    (tmp_path / "train.csv").write_text("image_path,caption\na.png,a red square\nb.png,a blue one\na.png,again a\n")
    (tmp_path / "val.csv").write_text("image_path,caption\nb.png,blue\nb.png,\n")
    splits = build_caption_csv({}, str(tmp_path))
    assert [i for _, _, i in splits["train"].items] == [0, 1, 0] and splits["val"].skipped == 1
    (tmp_path / "val.csv").write_text("path,text\nb.png,blue\n")
    with pytest.raises(DataError, match="header must contain image_path,caption"):
        build_caption_csv({}, str(tmp_path))
    (tmp_path / "val.csv").write_text("image_path,caption\nmissing.png,blue\n")
    with pytest.raises(DataError, match="1 captioned images are missing .*missing.png"):
        build_caption_csv({}, str(tmp_path))
    (tmp_path / "val.csv").write_text("image_path,caption\nb.png,\n")
    with pytest.raises(DataError, match="no non-empty captions"):
        build_caption_csv({}, str(tmp_path))


def test_class_prompts_caption_a_labelled_dataset():
    from dinobench.data.digits import build_digits

    train = build_digits({}, None)["train"]
    prompts = ClassPromptCaptions(train, "a photo of the digit {}.")
    sample = prompts[0]
    assert sample["caption"] == f"a photo of the digit {train.classes[sample['label']]}."
    assert len(prompts) == len(train) and prompts.describe()["prompt"] == "a photo of the digit {}."
    with pytest.raises(DataError, match="needs a {}"):
        ClassPromptCaptions(train, "no slot")
