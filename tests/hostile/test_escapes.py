"""Hardening II, first class: nothing read outside the data root, nothing written outside the output folder, no
crash from a forged ground-truth pickle, no foreign file pulled into a report."""

from __future__ import annotations

import io
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from dinobench.data.correspondence import build_pairs
from dinobench.data.davis import build_davis2017
from dinobench.data.layout import listed_path, name_component
from dinobench.data.retrieval import build_roxford5k
from dinobench.errors import DataError
from dinobench.synthetic.retrieval import write_synthetic_pairs, write_synthetic_revisited
from dinobench.synthetic.video import write_synthetic_davis
from dinobench.text.captions import build_caption_csv
from dinobench.utils.io import safe_component
from dinobench.utils.safe_pickle import MAX_NODES, restricted_loads

MULTIARRAY = getattr(np, "_core", None) or np.core  # numpy 2 names it numpy._core


# ----------------------------------------------------------------------------- the unpickler
class _Forged:
    """Pickles as numpy's own array recipe (placeholder + BUILD) with the dtype and raw bytes we choose."""

    def __init__(self, dtype, raw=b"\x41" * 8, shape=(1,), placeholder=(0,)):
        self.dtype, self.raw, self.shape, self.placeholder = np.dtype(dtype), raw, shape, placeholder

    def __reduce__(self):
        return (MULTIARRAY.multiarray._reconstruct, (np.ndarray, self.placeholder, b"b"),
                (1, self.shape, self.dtype, False, self.raw))


class _Call:
    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


@pytest.mark.parametrize("payload, why", [
    (_Forged("O"), "dtype '|O'"),  # the element would be read as a pointer: the interpreter died here before
    (_Forged("V8"), "dtype '|V8'"),
    (_Forged([("a", "<i4"), ("b", "<i4")]), "only numeric arrays"),
    (_Forged("<i8", raw=b"\x00" * 8, shape=(10**13,)), "10000000000000 elements"),
    (_Forged("<i8", placeholder=(10**12,)), "placeholder of shape"),
    (_Call(MULTIARRAY.multiarray.scalar, np.dtype("O"), b"\x41" * 8), "dtype '|O'"),
    (_Call(bytes, 10**12), "bytes(...) with arguments"),
    (_Call(bytearray, 10**12), "bytearray(n)"),
])
def test_forged_allowed_global_pickles_are_refused_before_use(payload, why):
    data = pickle.dumps(payload, protocol=2)
    with pytest.raises(DataError, match="gnd.pkl: refused") as info:
        restricted_loads(data, "gnd.pkl")
    assert why in str(info.value) and "\n" not in str(info.value)


def test_shared_reference_bombs_and_cycles_are_refused():
    dag: list = []
    for _ in range(64):  # 2^64 nodes when expanded, a few hundred bytes on disk
        dag = [dag, dag]
    cycle: list = []
    cycle.append(cycle)
    for obj in (dag, cycle):
        with pytest.raises(DataError, match=f"more than {MAX_NODES} nodes"):
            restricted_loads(pickle.dumps(obj, protocol=2), "gnd.pkl")


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_benign_ground_truth_with_empty_and_fortran_arrays_loads_under_every_protocol(protocol):
    gnd = {"imlist": ["a", "b"], "qimlist": ["q"],
           "gnd": [{"bbx": np.array([1.0, 2.0, 30.0, 40.0]), "easy": np.array([0, 1]),
                    "hard": np.array([], dtype=np.int64), "junk": np.asfortranarray(np.zeros((2, 2)))}],
           "scalar": np.float32(2.5), "empty": b"", "set": {1, 2}}
    back = restricted_loads(pickle.dumps(gnd, protocol=protocol))
    entry = back["gnd"][0]
    assert entry["hard"].size == 0 and entry["easy"].tolist() == [0, 1] and back["scalar"] == np.float32(2.5)
    assert back["empty"] == b"" and back["set"] == {1, 2} and entry["junk"].shape == (2, 2)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_any_bytes_unpickle_to_data_or_one_line(data):
    try:
        restricted_loads(b"\x80\x02" + data, "gnd.pkl")
    except DataError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("gnd.pkl: ")


def test_the_projects_own_synthetic_revisited_set_still_loads(tmp_path):
    root = write_synthetic_revisited(tmp_path, n_train=6, n_val=2)
    splits = build_roxford5k({}, str(root))
    assert len(splits["query"]) == 2 and len(splits["database"]) == 6


# ----------------------------------------------------------------------------- paths read from data files
@pytest.mark.parametrize("entry", ["../outside.png", "a/../../outside.png", "/etc/passwd", "", "x\x00.png", 7, None])
def test_a_listed_path_that_leaves_the_data_root_is_one_line(tmp_path, entry):
    with pytest.raises(DataError, match="list.json: image entry") as info:
        listed_path(tmp_path / "root", entry, "list.json")
    assert "\n" not in str(info.value)


def test_a_symlink_out_of_the_data_root_is_refused_and_inside_ones_are_fine(tmp_path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (tmp_path / "secret.png").write_bytes(b"x")
    os.symlink(tmp_path / "secret.png", root / "link.png")
    os.symlink(root / "sub", root / "inner")
    with pytest.raises(DataError, match="leads outside the data root"):
        listed_path(root, "link.png", "list.txt")
    assert listed_path(root, "inner/a.png", "list.txt") == root / "inner" / "a.png"
    assert listed_path(root, "sub/./a.png", "list.txt") == root / "sub" / "a.png"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=40))
def test_any_listed_text_stays_inside_the_root_or_is_one_line(tmp_path, entry):
    root = tmp_path / "root"
    try:
        path = listed_path(root, entry, "list.txt")
    except DataError as exc:
        assert "\n" not in str(exc).replace("\\n", "") or "\n" in entry
        return
    assert root.resolve() in path.resolve().parents or path.resolve() == root.resolve()


@pytest.mark.parametrize("name", ["..", ".", "", "a/b", "..\\x", "x\x00"])
def test_names_used_for_output_files_are_single_components(name):
    with pytest.raises(DataError, match="is not a plain name"):
        name_component(name, "val.txt", "sequence name")
    assert "/" not in safe_component(name) and safe_component(name) not in (".", "..", "")


def test_davis_sequence_names_cannot_climb_out(tmp_path):
    root = write_synthetic_davis(tmp_path / "davis", n_val=1, n_frames=3)
    listing = root / "ImageSets" / "2017" / "val.txt"
    listing.write_text("../../../escape\n")
    with pytest.raises(DataError, match=r"val.txt: sequence name '\.\./\.\./\.\./escape' is not a plain name"):
        build_davis2017({}, str(root))


def test_pairs_and_caption_files_cannot_name_files_outside_the_root(tmp_path):
    root = write_synthetic_pairs(tmp_path / "pairs", n_val=1)
    data = json.loads((root / "pairs.json").read_text())
    data["pairs"][0]["source"] = str(tmp_path / "outside.png")
    (root / "pairs.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"pairs.json: pairs\[0\].source entry .* is an absolute path"):
        build_pairs({}, str(root))
    captions = tmp_path / "captions"
    captions.mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "outside.png")
    for split in ("train", "val"):
        (captions / f"{split}.csv").write_text("image_path,caption\n../outside.png,a square\n")
    with pytest.raises(DataError, match="train.csv: image_path entry '../outside.png' leads outside the data root"):
        build_caption_csv({}, str(captions))


def test_revisited_imlist_entries_cannot_climb_out(tmp_path):
    root = write_synthetic_revisited(tmp_path, n_train=3, n_val=1)
    gnd_path = root / "gnd_roxford5k.pkl"
    gnd = restricted_loads(gnd_path.read_bytes())
    gnd["imlist"][0] = "../../outside"
    gnd_path.write_bytes(pickle.dumps(gnd, protocol=2))
    with pytest.raises(DataError, match="gnd_roxford5k.pkl: imlist entry '../../outside.jpg' leads outside"):
        build_roxford5k({}, str(root))


# ----------------------------------------------------------------------------- report artifacts
def test_the_report_embeds_only_real_images_inside_the_run_folder(tmp_path):
    from helpers import make_result

    from dinobench.leaderboard import build_leaderboard, scan
    from dinobench.report import prediction_figures
    from dinobench.results import write_result

    outside = tmp_path / "private.png"
    Image.new("RGB", (4, 4), (200, 0, 0)).save(outside)
    record = make_result(50.0)
    path = write_result(record, tmp_path / "results")
    run_dir = Path(path).parent
    Image.new("RGB", (4, 4), (0, 200, 0)).save(run_dir / "ok.png")
    (run_dir / "fake.png").write_text("not an image at all")
    (run_dir / "jpeg_named.png").write_bytes(_jpeg())
    os.symlink(outside, run_dir / "link.png")
    data = json.loads(Path(path).read_text())
    data["artifacts"] = [str(outside), "../../private.png", "link.png", "fake.png", "jpeg_named.png", "ok.png"]
    Path(path).write_text(json.dumps(data))
    figures = prediction_figures(build_leaderboard(scan([tmp_path / "results"])))
    assert [caption.rsplit(" · ", 1)[1] for caption, _, _ in figures] == ["ok.png"]
    assert figures[0][2] == (run_dir / "ok.png").read_bytes()


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format="JPEG")
    return buffer.getvalue()


# ----------------------------------------------------------------------------- values that would move a number
def _davis(tmp_path):
    root = write_synthetic_davis(tmp_path / "davis", n_val=1, n_frames=3, n_objects=2)
    (sequence,) = sorted((root / "Annotations" / "480p").iterdir())
    return root, sorted(sequence.iterdir())


def _relabel(path, mapping=None, size=None):
    with Image.open(path) as img:
        palette, ids = img.getpalette(), np.asarray(img).copy()
    for old, new in (mapping or {}).items():
        ids[np.asarray(Image.open(path)) == old] = new
    out = Image.fromarray(ids, mode="P")
    out.putpalette(palette)
    (out.resize(size, Image.NEAREST) if size else out).save(path)


@pytest.mark.parametrize("case, message", [
    ("gap", r"holds object ids \[1, 200\]; it needs objects 1..K without gaps"),
    ("empty", r"holds object ids \[\]"),
    ("later", "object id 7 of .* is not in its first annotation"),
    ("size", "frames and annotations of a sequence share one size"),
])
def test_davis_annotations_that_would_move_j_and_f_are_one_line(tmp_path, case, message):
    root, annotations = _davis(tmp_path)
    if case == "gap":
        _relabel(annotations[0], {2: 200})
    elif case == "empty":
        _relabel(annotations[0], {1: 0, 2: 0})
    elif case == "later":
        _relabel(annotations[1], {2: 7})
    else:
        _relabel(annotations[1], size=(32, 20))
    with pytest.raises(DataError, match=message) as info:
        build_davis2017({}, str(root))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("field, value, message", [
    ("target_bbox", [40, 30, 5, 5], "is not a box"),
    ("target_bbox", [1, 1, float("nan"), 9], "is not a box"),
    ("target_keypoints", [[1000.0, 3.0]], "is not a point inside"),
    ("source_keypoints", [[float("nan"), 3.0]], "is not a point inside"),
])
def test_pair_boxes_and_keypoints_are_checked_before_pck(tmp_path, field, value, message):
    root = write_synthetic_pairs(tmp_path / "pairs", n_val=1)
    data = json.loads((root / "pairs.json").read_text())
    pair = data["pairs"][0]
    if field != "target_bbox":  # as many points as before, all of them bad
        value = value * len(pair[field])
    pair[field] = value
    (root / "pairs.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match=message) as info:
        build_pairs({}, str(root))
    assert "\n" not in str(info.value)


def _voc(tmp_path):
    from dinobench.synthetic.retrieval import write_synthetic_discovery

    root = write_synthetic_discovery(tmp_path / "voc", n_train=3, size=(40, 50))
    return root, sorted((root / "Annotations").glob("*.xml"))


@pytest.mark.parametrize("edit, message", [
    (lambda xml: xml.replace("<width>50</width>", "<width>80</width>"), r"<size> 80x40 but .* is 50x40"),
    (lambda xml: _set_box(xml, "30", "5", "10", "20"), "is not inside the 50x40 image with xmax > xmin"),
    (lambda xml: _set_box(xml, "1", "1", "90", "20"), "is not inside the 50x40 image"),
    (lambda xml: _set_box(xml, "nan", "1", "10", "20"), "is not inside the 50x40 image"),
])
def test_voc_annotations_that_would_move_corloc_are_one_line(tmp_path, edit, message):
    from dinobench.data.discovery import build_voc07

    root, xmls = _voc(tmp_path)
    xmls[0].write_text(edit(xmls[0].read_text()))
    with pytest.raises(DataError, match=message) as info:
        build_voc07({}, str(root))
    assert "\n" not in str(info.value)


def test_voc_images_without_objects_are_skipped_and_counted_not_scored_as_misses(tmp_path):
    import re

    from dinobench.data.discovery import build_voc07

    root, xmls = _voc(tmp_path)
    xmls[0].write_text(re.sub(r"<object>.*</object>", "", xmls[0].read_text(), flags=re.S))
    split = build_voc07({}, str(root))["trainval"]
    assert len(split) == 2 and split.describe()["skipped"] == {"no_objects": 1}


def _set_box(xml: str, xmin: str, ymin: str, xmax: str, ymax: str) -> str:
    import re

    for key, value in (("xmin", xmin), ("ymin", ymin), ("xmax", xmax), ("ymax", ymax)):
        xml = re.sub(f"<{key}>[^<]*</{key}>", f"<{key}>{value}</{key}>", xml, count=1)
    return xml


@pytest.mark.parametrize("edit, message", [
    (lambda g: g.update(imlist="db_0000"), "imlist is a str, not a list"),
    (lambda g: g["imlist"].__setitem__(0, 7), r"imlist\[0\] is a int, not an image name"),
    (lambda g: g["gnd"][0].update(bbx=["a", "b", "c", "d"]), "is not a box"),
    (lambda g: g["gnd"][0].update(bbx=[1.0, 1.0, float("inf"), 5.0]), "is not a box"),
    (lambda g: g["gnd"][0].update(easy=np.array([0.5])), "holds float64 values, not database indices"),
    (lambda g: g["gnd"].__setitem__(0, "x"), r"gnd\[0\] has no bbx"),
])
def test_revisited_ground_truth_of_the_wrong_types_is_one_line(tmp_path, edit, message):
    root = write_synthetic_revisited(tmp_path, n_train=3, n_val=1)
    gnd_path = root / "gnd_roxford5k.pkl"
    gnd = restricted_loads(gnd_path.read_bytes())
    edit(gnd)
    gnd_path.write_bytes(pickle.dumps(gnd, protocol=2))
    with pytest.raises(DataError, match=message) as info:
        build_roxford5k({}, str(root))
    assert "\n" not in str(info.value)


def test_deeply_nested_json_is_one_line(tmp_path):
    from dinobench.data.layout import read_json

    (tmp_path / "deep.json").write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(DataError, match="deep.json: the pairs file is (nested too deeply|not valid)"):
        read_json(tmp_path / "deep.json", "pairs file")


@pytest.mark.parametrize("content, message", [
    ("image_path,caption\na.png,a red, square\n".encode(), "row 2 has more fields than the header"),
    ("image_path,caption\na.png,caf\xe9\n".encode("latin-1"), "not UTF-8 text"),
    (b"image_path,caption\na.png,\"" + b"x" * 200_000 + b"\"\n", "not a readable CSV"),
])
def test_caption_csv_problems_are_one_line(tmp_path, content, message):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    for split in ("train", "val"):
        (tmp_path / f"{split}.csv").write_bytes(content)
    with pytest.raises(DataError, match=message) as info:
        build_caption_csv({}, str(tmp_path))
    assert "\n" not in str(info.value)


def test_a_broken_head_description_is_one_line_for_export(tmp_path):
    from dinobench.errors import WeightsError
    from dinobench.head_export import export_head

    run = tmp_path / "run"
    run.mkdir()
    (run / "result.json").write_text("{}")
    (run / "head.pth").write_bytes(b"")
    for bad in ("[1, 2]", "{not json", '{"layout": "depth", "config": 3}'):
        (run / "head.json").write_text(bad)
        with pytest.raises(WeightsError, match="head.json: not a head description") as info:
            export_head(run, tmp_path / "out")
        assert "\n" not in str(info.value)


_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-10, 10**6) | st.floats(allow_nan=True)
                       | st.text(max_size=12), lambda c: st.lists(c, max_size=5) | st.dictionaries(st.text(max_size=6),
                                                                                                  c, max_size=3),
                       max_leaves=10)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(field=st.sampled_from(["source", "target", "source_keypoints", "target_keypoints", "target_bbox"]),
       value=_VALUES)
def test_any_value_in_a_pairs_file_is_accepted_or_one_line(tmp_path_factory, field, value):
    root = tmp_path_factory.mktemp("pairs")
    write_synthetic_pairs(root, n_val=1)
    data = json.loads((root / "pairs.json").read_text())
    data["pairs"][0][field] = value
    (root / "pairs.json").write_text(json.dumps(data))
    try:
        build_pairs({}, str(root))
    except DataError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(field=st.sampled_from(["bbx", "easy", "hard", "junk"]), value=_VALUES)
def test_any_value_in_a_ground_truth_entry_is_accepted_or_one_line(tmp_path_factory, field, value):
    root = write_synthetic_revisited(tmp_path_factory.mktemp("gnd"), n_train=3, n_val=1)
    gnd_path = root / "gnd_roxford5k.pkl"
    gnd = restricted_loads(gnd_path.read_bytes())
    gnd["gnd"][0][field] = value
    gnd_path.write_bytes(pickle.dumps(gnd, protocol=2))
    try:
        build_roxford5k({}, str(root))
    except DataError as exc:
        assert "\n" not in str(exc)


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["annotations"][0].pop("bbox"), "lacks bbox"),
    (lambda d: d["images"][0].pop("height"), "has no positive width/height"),
    (lambda d: d["images"][0].update(file_name="../../x.jpg"), "leads outside the data root"),
])
def test_coco20k_records_are_checked_like_coco(tmp_path, edit, message):
    from dinobench.data.discovery import build_coco20k
    from dinobench.synthetic.retrieval import write_synthetic_discovery

    root = write_synthetic_discovery(tmp_path / "c20k", n_train=3, layout="coco20k")
    path = root / "annotations" / "instances_train2014.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    (root / "coco_20k_filenames.txt").unlink(missing_ok=True)
    with pytest.raises(DataError, match=message) as info:
        build_coco20k({}, str(root))
    assert "\n" not in str(info.value)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(where=st.sampled_from(["images", "annotations", "image", "caption", "id"]), value=_VALUES)
def test_any_value_in_a_coco_captions_file_is_accepted_or_one_line(tmp_path_factory, where, value):
    from dinobench.text.captions import build_coco_captions

    root = tmp_path_factory.mktemp("captions")
    for split in ("train2017", "val2017"):
        (root / split).mkdir()
        Image.new("RGB", (8, 8)).save(root / split / "a.png")
        data = {"images": [{"id": 1, "file_name": "a.png"}],
                "annotations": [{"id": 1, "image_id": 1, "caption": "a square"}]}
        if where in ("images", "annotations"):
            data[where] = value
        elif where == "image":
            data["images"][0]["file_name"] = value
        else:
            data["annotations"][0][where] = value
        (root / "annotations").mkdir(exist_ok=True)
        (root / "annotations" / f"captions_{split}.json").write_text(json.dumps(data))
    try:
        build_coco_captions({}, str(root))
    except DataError as exc:
        assert "\n" not in str(exc) and "string indices" not in str(exc)
