"""Extract the official DINOv3 evaluation recipes into tests/fixtures/official_recipes.json.

    python scripts/official_recipes.py --official <facebookresearch/dinov3 checkout or bare git dir> \
        [--out tests/fixtures/official_recipes.json]

For every shipped task that cites an official recipe (``task.official``), the values its official config, script or
notebook sets, each with the file and line it was read from, as dinobench's dotted config keys. The values are read
from the official files (dataclass defaults and module constants by ``ast``, notebook cells by their assignment
lines, YAML configs by key), never typed in here; tests/core/test_official_recipes.py resolves each task and
compares. Per-backbone values (``by_backbone``) are keyed by the dinobench backbone name they are resolved with.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import subprocess
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]


class Official:
    """Read files of an official checkout (work tree) or bare git directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.bare = not (path / "dinov3").is_dir()
        self.commit = self._git("rev-parse", "HEAD").strip()

    def _git(self, *args: str) -> str:
        flag = [f"--git-dir={self.path}"] if self.bare else ["-C", str(self.path)]
        return subprocess.run(["git", *flag, *args], check=True, capture_output=True, text=True).stdout

    def text(self, rel: str) -> str:
        """The file ``rel`` at HEAD."""
        return self._git("show", f"HEAD:{rel}") if self.bare else (self.path / rel).read_text()

    def constant(self, rel: str, name: str) -> tuple[Any, int]:
        """A module-level constant (a literal, or ``int(a * b / c)`` of earlier constants) and its line."""
        tree = ast.parse(self.text(rel))
        env: dict[str, Any] = {}
        for node in tree.body:
            target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
            if isinstance(target, ast.Name) and getattr(node, "value", None) is not None:
                try:
                    env[target.id] = eval(compile(ast.Expression(node.value), rel, "eval"), {"int": int}, dict(env))
                except Exception:  # noqa: BLE001 - not a literal expression (a call into torch, ...)
                    continue
                if target.id == name:
                    return env[name], node.lineno
            if isinstance(node, ast.ImportFrom) and node.module and any(a.name == name for a in node.names):
                return self.constant(node.module.replace(".", "/") + ".py", name)  # imported from a sibling module
        raise KeyError(f"{rel}: no constant {name}")

    def field(self, rel: str, cls: str, name: str) -> tuple[Any, int]:
        """A dataclass field's default (a literal or a module constant) and its line."""
        tree = ast.parse(self.text(rel))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.name == cls:
                for item in node.body:
                    if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name) \
                            and item.target.id == name and item.value is not None:
                        if isinstance(item.value, ast.Name):
                            return self.constant(rel, item.value.id)[0], item.lineno
                        return ast.literal_eval(item.value), item.lineno
        raise KeyError(f"{rel}: no field {cls}.{name}")

    def notebook(self, rel: str, pattern: str) -> tuple[str, int]:
        """The first source line of notebook ``rel`` (its JSON lines) matching ``pattern``: (group 1, line)."""
        for number, line in enumerate(self.text(rel).splitlines(), 1):
            found = re.search(pattern, line)
            if found:
                return found.group(1), number
        raise KeyError(f"{rel}: nothing matches {pattern!r}")

    def yaml_value(self, rel: str, dotted: str) -> tuple[Any, int]:
        """The value at ``dotted`` (``a.b.c``) of YAML file ``rel`` and the line of its key."""
        import yaml

        text = self.text(rel)
        value: Any = yaml.safe_load(text)
        node = yaml.compose(text)
        line = 0
        for part in dotted.split("."):
            value = value[part]
            key, node = next((k, v) for k, v in node.value if k.value == part)
            line = key.start_mark.line + 1
        return value, line

    def calls(self, rel: str, function: str, callee: str) -> tuple[bool, int]:
        """Whether ``function`` of ``rel`` calls ``callee`` (and the line of the call)."""
        for node in ast.walk(ast.parse(self.text(rel))):
            if isinstance(node, ast.FunctionDef) and node.name == function:
                for sub in ast.walk(node):
                    if isinstance(sub, ast.Call) and getattr(sub.func, "id", None) == callee:
                        return True, sub.lineno
                return False, node.lineno
        raise KeyError(f"{rel}: no function {function}")


def recipes(o: Official) -> dict[str, dict[str, Any]]:
    """task -> {"official", "values": {dotted key: value}, "where": {dotted key: file:line}, "backbone"?}."""
    out: dict[str, dict[str, Any]] = {}

    def add(task: str, source: str, key: str, read: Callable[[], tuple[Any, int]], rel: str,
            convert: Callable[[Any], Any] = lambda v: v, backbone: str | None = None) -> None:
        value, line = read()
        name = task if backbone is None else f"{task}@{backbone}"
        entry = out.setdefault(name, {"task": task, "official": source, "values": {}, "where": {}})
        if backbone is not None:
            entry["backbone"] = backbone
        entry["values"][key] = convert(value)
        entry["where"][key] = f"{rel}:{line}"

    transforms = "dinov3/data/transforms.py"
    resize = lambda: o.constant(transforms, "RESIZE_DEFAULT_SIZE")  # noqa: E731
    crop = lambda: o.constant(transforms, "CROP_DEFAULT_SIZE")  # noqa: E731
    # the default interpolation of make_classification_{train,eval}_transform
    bicubic = lambda: (o.notebook(transforms, r"interpolation=v2\.InterpolationMode\.(BICUBIC)")[0].lower(),  # noqa: E731
                       o.notebook(transforms, r"interpolation=v2\.InterpolationMode\.(BICUBIC)")[1])

    linear = "dinov3/eval/linear.py"
    add("imagenet-linear", linear, "protocol.learning_rates", lambda: o.constant(linear, "_DEFAULT_LR_LIST"), linear,
        list)
    add("imagenet-linear", linear, "protocol.n_last_blocks", lambda: o.field(linear, "TrainConfig", "n_last_blocks_list"),
        linear, list)
    add("imagenet-linear", linear, "protocol.epochs", lambda: o.field(linear, "TrainConfig", "epochs"), linear)
    add("imagenet-linear", linear, "protocol.train_augmentation",
        lambda: o.calls(linear, "make_train_transform", "make_classification_train_transform"), linear)
    add("imagenet-linear", linear, "transform.resize", resize, transforms)
    add("imagenet-linear", linear, "transform.crop", crop, transforms)
    add("imagenet-linear", linear, "transform.interpolation", bicubic, transforms)

    knn = "dinov3/eval/knn.py"
    add("imagenet-knn", knn, "protocol.nb_knn", lambda: o.field(knn, "TrainConfig", "ks"), knn, list)
    add("imagenet-knn", knn, "protocol.temperature", lambda: o.field(knn, "TrainConfig", "temperature"), knn)
    add("imagenet-knn", knn, "transform.resize", resize, transforms)
    add("imagenet-knn", knn, "transform.crop", crop, transforms)
    add("imagenet-knn", knn, "transform.interpolation", bicubic, transforms)

    logreg = "dinov3/eval/log_regression.py"
    grid = o.notebook(logreg, r"^C_POWER_RANGE = torch\.linspace\((.*)\)$")
    low, high, size = (float(v) for v in grid[0].split(","))
    add("imagenet-logreg", logreg, "protocol.c_min_exp", lambda: (low, grid[1]), logreg)
    add("imagenet-logreg", logreg, "protocol.c_max_exp", lambda: (high, grid[1]), logreg)
    add("imagenet-logreg", logreg, "protocol.grid_size", lambda: (int(size), grid[1]), logreg)
    add("imagenet-logreg", logreg, "protocol.max_iter", lambda: o.field(logreg, "TrainConfig", "max_train_iters"), logreg)
    add("imagenet-logreg", logreg, "protocol.tol", lambda: o.field(logreg, "TrainConfig", "tol"), logreg)
    add("imagenet-logreg", logreg, "transform.resize", lambda: o.field(logreg, "TransformConfig", "resize_size"), logreg)
    add("imagenet-logreg", logreg, "transform.crop", lambda: o.field(logreg, "TransformConfig", "crop_size"), logreg)

    notebook = "notebooks/dinotxt_inference.ipynb"
    pre = r"make_classification_eval_transform\(resize_size=(\d+), crop_size=\d+\)"
    add("imagenet-zeroshot", notebook, "transform.resize", lambda: o.notebook(notebook, pre), notebook, int)
    add("imagenet-zeroshot", notebook, "transform.crop",
        lambda: o.notebook(notebook, r"make_classification_eval_transform\(resize_size=\d+, crop_size=(\d+)\)"),
        notebook, int)
    add("imagenet-zeroshot", notebook, "transform.interpolation", bicubic, transforms)

    tracking = "notebooks/segmentation_tracking.ipynb"
    for key, name, cast in (("protocol.context", "MAX_CONTEXT_LENGTH", int), ("protocol.radius", "NEIGHBORHOOD_SIZE", float),
                            ("protocol.topk", "TOPK", int), ("protocol.temperature", "TEMPERATURE", float),
                            ("transform.short_side", "SHORT_SIDE", int)):
        add("davis2017-tracking", tracking, key, lambda name=name: o.notebook(tracking, rf'"{name} = ([0-9.]+)'),
            tracking, cast)
    add("davis2017-tracking", tracking, "protocol.neighborhood",
        lambda: o.notebook(tracking, r'"NEIGHBORHOOD_SHAPE = \\"(\w+)\\"'), tracking)

    m2f = "dinov3/eval/segmentation/configs/config-ade20k-m2f-inference.yaml"
    for key, dotted in (("protocol.inference.scales", "transforms.eval.tta_ratios"),
                        ("protocol.inference.flip", "eval.use_tta"),  # TTA = the ratios, each also mirrored
                        ("protocol.inference.mode", "eval.mode"), ("protocol.inference.crop_size", "eval.crop_size"),
                        ("protocol.inference.stride", "eval.stride"),
                        # the views' short side (eval.py builds them from eval.crop_size, the same 896)
                        ("transform.eval.scale", "transforms.eval.img_size")):
        add("ade20k-m2f", m2f, key, lambda dotted=dotted: o.yaml_value(m2f, dotted), m2f)

    hub = "dinov3/hub/detectors.py"
    windows = o.notebook(hub, r"n_windows_sqrt = dict\((.*)\)\[backbone_name\]")
    for item in windows[0].split(","):
        hub_name, value = (part.strip() for part in item.split("="))
        backbone = hub_name.removeprefix("dinov3_")
        add("coco-plaindetr", "dinov3/hub/detectors.py", "protocol.head.n_windows_sqrt", lambda v=value: (int(v), windows[1]),
            hub, backbone=backbone)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", type=Path, required=True, help="dinov3 checkout or bare git directory")
    parser.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures" / "official_recipes.json")
    args = parser.parse_args()
    official = Official(args.official.resolve())
    data = {"source": {"repo": "facebookresearch/dinov3", "commit": official.commit}, "recipes": recipes(official)}
    args.out.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"{args.out}: {len(data['recipes'])} recipes, "
          f"{sum(len(r['values']) for r in data['recipes'].values())} values from {official.commit[:12]}")


if __name__ == "__main__":
    main()
