"""Extract the official DINOv3 evaluation recipes into tests/fixtures/official_recipes.json.

    python scripts/official_recipes.py --official <facebookresearch/dinov3 checkout or bare git dir> \
        [--out tests/fixtures/official_recipes.json]

For every shipped task that cites an official recipe (``task.official``), the values its official config, script or
notebook sets, each with the file and line it was read from, as dinobench's dotted config keys. The values are read
from the official files (dataclass and argument defaults and module constants by ``ast``, notebook cells by
their assignment lines, YAML configs by key), never typed in here; tests/core/test_official_recipes.py resolves
each task and compares. Per-backbone values (``by_backbone``) are keyed by the dinobench backbone name they are
resolved with.
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

    def notebook(self, rel: str, pattern: str, after: str | None = None) -> tuple[str, int]:
        """The first source line of notebook ``rel`` (its JSON lines) matching ``pattern``: (group 1, line);
        with ``after``, the first one below the first line matching ``after``."""
        started = after is None
        for number, line in enumerate(self.text(rel).splitlines(), 1):
            if not started:
                started = re.search(after, line) is not None
                continue
            found = re.search(pattern, line)
            if found:
                return found.group(1), number
        raise KeyError(f"{rel}: nothing matches {pattern!r}" + (f" below {after!r}" if after else ""))

    def notebook_literal(self, rel: str, name: str) -> tuple[Any, int]:
        """The literal a code cell of notebook ``rel`` assigns to ``name`` (module level of the cell) and the
        notebook line of that assignment."""
        for cell in json.loads(self.text(rel))["cells"]:
            if cell["cell_type"] != "code":
                continue
            try:
                tree = ast.parse("".join(cell["source"]))
            except SyntaxError:  # a cell with shell or magic lines
                continue
            for node in tree.body:
                if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
                    return ast.literal_eval(node.value), self.notebook(rel, rf'"({re.escape(name)}) = ')[1]
        raise KeyError(f"{rel}: no cell assigns {name}")

    def _function(self, rel: str, function: str) -> ast.FunctionDef:
        """The first function (or method) named ``function`` of ``rel``; a class name: its ``__init__``."""
        for node in ast.walk(ast.parse(self.text(rel))):
            if isinstance(node, ast.ClassDef) and node.name == function:
                return next(item for item in node.body if isinstance(item, ast.FunctionDef)
                            and item.name == "__init__")
            if isinstance(node, ast.FunctionDef) and node.name == function:
                return node
        raise KeyError(f"{rel}: no function or class {function}")

    def default(self, rel: str, function: str, arg: str) -> tuple[Any, int]:
        """The default of argument ``arg`` of ``function`` (a class: its ``__init__``) and its line."""
        args = self._function(rel, function).args
        positional = [*args.posonlyargs, *args.args]
        pairs = [*zip(positional[len(positional) - len(args.defaults):], args.defaults),
                 *((a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None)]
        for argument, value in pairs:
            if argument.arg == arg:
                return ast.literal_eval(value), value.lineno
        raise KeyError(f"{rel}: {function} has no argument {arg} with a default")

    def in_function(self, rel: str, function: str, pattern: str) -> tuple[str, int]:
        """The first line of ``function`` (a class: its ``__init__``) of ``rel`` matching ``pattern``:
        (group 1, line)."""
        node = self._function(rel, function)
        lines = self.text(rel).splitlines()
        for number in range(node.lineno, node.end_lineno + 1):
            found = re.search(pattern, lines[number - 1])
            if found:
                return found.group(1), number
        raise KeyError(f"{rel}: no line of {function} matches {pattern!r}")

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

    # Shared representation conversions for the dense-head YAML configs. PyYAML reads "1e-3" (no dot) as a
    # string, OmegaConf (what the official scripts use) as a float: values that are floats are read with float().
    # dinobench writes "no limit" as None: gradient_clip 'inf' = no clipping, final_div_factor .inf = anneal to 0.
    layer_sets = {"LAST": "last", "FOUR_LAST": "four_last", "FOUR_EVEN_INTERVALS": "four_even"}  # heads/necks.py
    unbounded = lambda v: None if float(v) == float("inf") else float(v)  # noqa: E731

    def yaml_product(rel: str, first: str, second: str) -> Callable[[], tuple[Any, int]]:
        """Global batch = per-GPU batch (``bs``) x GPUs (``n_gpus``): dinobench's batch_size is global."""
        return lambda: (o.yaml_value(rel, first)[0] * o.yaml_value(rel, second)[0], o.yaml_value(rel, first)[1])

    def yaml_pair(rel: str, first: str, second: str) -> Callable[[], tuple[Any, int]]:
        """AdamW betas: two official keys (beta1, beta2), one dinobench list; the line is beta1's."""
        return lambda: ([float(o.yaml_value(rel, first)[0]), float(o.yaml_value(rel, second)[0])],
                        o.yaml_value(rel, first)[1])

    def training_section(task: str, rel: str) -> None:
        """The keys every dense-head training yaml sets alike: global batch, iterations, AdamW, clipping and the
        one-cycle schedule's warm-up / final division."""
        def one(key: str, dotted: str, convert: Callable[[Any], Any] = lambda v: v) -> None:
            add(task, rel, key, lambda: o.yaml_value(rel, dotted), rel, convert)

        add(task, rel, "train.batch_size", yaml_product(rel, "bs", "n_gpus"), rel)
        one("train.max_iters", "scheduler.total_iter")
        one("train.optimizer.lr", "optimizer.lr", float)
        add(task, rel, "train.optimizer.betas", yaml_pair(rel, "optimizer.beta1", "optimizer.beta2"), rel)
        one("train.optimizer.weight_decay", "optimizer.weight_decay", float)
        one("train.grad_clip", "optimizer.gradient_clip", unbounded)
        one("train.scheduler.warmup_iters", "scheduler.constructor_kwargs.warmup_iters")
        one("train.scheduler.final_div_factor", "scheduler.constructor_kwargs.final_div_factor", unbounded)

    # ADE20K linear segmentation: the training config + the dataclass / function defaults it leaves out
    seg = "dinov3/eval/segmentation/configs/config-ade20k-linear-training.yaml"
    seg_config, seg_sched = "dinov3/eval/segmentation/config.py", "dinov3/eval/segmentation/schedulers.py"
    seg_tf = "dinov3/eval/segmentation/transforms.py"

    def seg_add(key: str, dotted: str, convert: Callable[[Any], Any] = lambda v: v) -> None:
        add("ade20k-linear", seg, key, lambda: o.yaml_value(seg, dotted), seg, convert)

    training_section("ade20k-linear", seg)
    seg_add("train.amp", "model_dtype", lambda v: None if v == "FLOAT32" else v)  # dinobench: None = float32
    seg_add("train.scheduler.warmup_ratio", "scheduler.constructor_kwargs.warmup_ratio", float)
    seg_add("train.scheduler.anneal_strategy", "scheduler.constructor_kwargs.anneal_strategy")
    seg_add("train.scheduler.use_beta1", "scheduler.constructor_kwargs.use_beta1")
    add("ade20k-linear", seg, "train.scheduler.div_factor",
        lambda: o.default(seg_sched, "WarmupOneCycleLR", "div_factor"), seg_sched)
    # the best of the evaluations every eval_interval iterations is reported (protocol.report="best")
    seg_add("train.eval_every", "eval.eval_interval")
    seg_add("protocol.head.layers", "decoder_head.backbone_out_layers", layer_sets.get)
    seg_add("protocol.head.use_cls_token", "decoder_head.use_cls_token")
    seg_add("protocol.head.use_batchnorm", "decoder_head.use_batchnorm")
    seg_add("protocol.head.use_backbone_norm", "decoder_head.use_backbone_norm")
    add("ade20k-linear", seg, "protocol.head.dropout", lambda: o.field(seg_config, "DecoderConfig", "dropout"),
        seg_config)
    seg_add("transform.train.scale", "transforms.train.img_size")
    seg_add("transform.train.ratio_range", "transforms.train.random_img_size_ratio_range",
            lambda v: [float(x) for x in v])
    seg_add("transform.train.crop_size", "transforms.train.crop_size", list)
    seg_add("transform.train.flip_prob", "transforms.train.flip_prob", float)
    add("ade20k-linear", seg, "transform.train.cat_max_ratio",
        lambda: o.default(seg_tf, "RandomCropWithLabel", "cat_max_ratio"), seg_tf)
    add("ade20k-linear", seg, "transform.train.photometric",
        lambda: o.calls(seg_tf, "make_segmentation_train_transforms", "PhotoMetricDistortion"), seg_tf)
    seg_add("transform.eval.scale", "transforms.eval.img_size")
    seg_add("dataset.reduce_zero_label", "eval.reduce_zero_label")
    seg_add("protocol.inference.mode", "eval.mode")
    seg_add("protocol.inference.crop_size", "eval.crop_size")
    seg_add("protocol.inference.stride", "eval.stride")

    # NYU-Depth v2 linear depth (config-nyu.yaml trains a linear head, decoder_head.type: linear)
    nyu = "dinov3/eval/depth/configs/config-nyu.yaml"
    depth_config, depth_sched = "dinov3/eval/depth/config.py", "dinov3/eval/depth/schedulers.py"
    depth_tf, depth_loss = "dinov3/eval/depth/transforms.py", "dinov3/eval/depth/loss.py"
    depth_models = "dinov3/eval/depth/models/__init__.py"

    def nyu_add(key: str, dotted: str, convert: Callable[[Any], Any] = lambda v: v) -> None:
        add("nyu-linear", nyu, key, lambda: o.yaml_value(nyu, dotted), nyu, convert)

    def depth_range(bound: str) -> tuple[float, int]:
        """dinobench has one range (dataset.{min,max}_depth) for the bins (protocol.head.*_depth None) and the
        evaluation: the official eval range, valid only while the decoder's bins range is the same."""
        value, line = o.yaml_value(nyu, f"eval.{bound}")
        if float(o.yaml_value(nyu, f"decoder_head.{bound}")[0]) != float(value):
            raise ValueError(f"{nyu}: decoder_head.{bound} != eval.{bound}: protocol.head.{bound} must state it")
        return float(value), line

    training_section("nyu-linear", nyu)
    nyu_add("train.scheduler.base_momentum", "scheduler.constructor_kwargs.base_momentum", float)
    nyu_add("train.scheduler.max_momentum", "scheduler.constructor_kwargs.max_momentum", float)
    for name in ("warmup_ratio", "div_factor", "anneal_strategy", "use_beta1"):
        add("nyu-linear", nyu, f"train.scheduler.{name}",
            lambda name=name: o.default(depth_sched, "WarmupOneCycleLR", name), depth_sched)
    add("nyu-linear", nyu, "train.eval_every", lambda: o.field(depth_config, "EvalConfig", "eval_interval"),
        depth_config)
    nyu_add("protocol.head.layers", "decoder_head.backbone_out_layers", layer_sets.get)
    nyu_add("protocol.head.use_cls_token", "decoder_head.use_cls_token")
    nyu_add("protocol.head.use_batchnorm", "decoder_head.use_batchnorm")
    nyu_add("protocol.head.use_backbone_norm", "decoder_head.use_backbone_norm")
    nyu_add("protocol.head.n_bins", "decoder_head.n_output_channels")
    for name in ("bins_strategy", "norm_strategy"):
        add("nyu-linear", nyu, f"protocol.head.{name}", lambda name=name: o.field(depth_models, "DecoderConfig", name),
            depth_models)
    add("nyu-linear", nyu, "dataset.min_depth", lambda: depth_range("min_depth"), nyu)
    add("nyu-linear", nyu, "dataset.max_depth", lambda: depth_range("max_depth"), nyu)
    add("nyu-linear", nyu, "dataset.depth_scale",
        lambda: o.field(depth_config, "TransformConfig", "normalization_constant"), depth_config)
    nyu_add("dataset.eigen_crop", "transforms.eval.eval_mask", lambda v: v == "NYU_EIGEN")  # the Eigen crop
    # the SigLoss the config selects (losses.SIGLOSS), with the warm-up LossType.module builds it with
    add("nyu-linear", nyu, "protocol.loss.warm_up",
        lambda: o.in_function(depth_loss, "module", r"warm_up=(True|False)"), depth_loss, lambda v: v == "True")
    add("nyu-linear", nyu, "protocol.loss.warm_iter",
        lambda: o.in_function(depth_loss, "module", r"warm_iter=(\d+)"), depth_loss, int)
    nyu_add("transform.train.fixed_crop", "transforms.train.fixed_crop", str.lower)  # 'NYU' -> 'nyu'
    nyu_add("transform.train.crop_size", "transforms.train.random_crop", list)
    nyu_add("transform.train.color_aug.brightness_range", "transforms.train.brightness_range",
            lambda v: [float(x) for x in v])
    add("nyu-linear", nyu, "transform.train.color_aug.prob",
        lambda: o.in_function(depth_tf, "make_depth_train_transforms", r"ColorAugV2\(prob=([0-9.]+)"), depth_tf,
        float)
    add("nyu-linear", nyu, "transform.train.rotation_deg",
        lambda: o.field(depth_config, "TrainTransformConfig", "rotation_angle"), depth_config)
    # the rotation is wrapped in MaybeApply(threshold=p): applied with probability p
    add("nyu-linear", nyu, "transform.train.rotation_prob",
        lambda: o.in_function(depth_tf, "make_depth_train_transforms", r"threshold=([0-9.]+)"), depth_tf, float)
    # FULL = no fixed crop (dinobench None); the evaluation image keeps its size (img_size None)
    nyu_add("transform.eval.fixed_crop", "transforms.eval.fixed_crop", lambda v: None if v == "FULL" else v.lower())
    add("nyu-linear", nyu, "transform.eval.scale", lambda: o.field(depth_config, "EvalTransformConfig", "img_size"),
        depth_config)
    nyu_add("protocol.inference.flip", "eval.use_tta")  # the official TTA is the left-right flip
    # dinobench writes "off" as None (an optional key, outside the protocol hash)
    nyu_add("protocol.inference.align_least_squares", "eval.align_least_squares", lambda v: v or None)

    # ADE20K zero-shot segmentation with dino.txt (the notebook's Configuration dataclass and Ade20k dataset)
    zs = "notebooks/dinotxt_segmentation_inference.ipynb"
    add("ade20k-zeroshot", zs, "transform.eval.scale", lambda: o.notebook(zs, r'"\s*resize: int = (\d+)'), zs, int)
    add("ade20k-zeroshot", zs, "transform.eval.interpolation",  # the dataset transform's ShortSideResize
        lambda: o.notebook(zs, r"ShortSideResize\(cfg\.resize, TVT\.InterpolationMode\.(\w+)\)"), zs, str.lower)
    add("ade20k-zeroshot", zs, "protocol.inference.mode", lambda: o.notebook(zs, r'"\s*mode: str = \\"(\w+)\\"'), zs)
    add("ade20k-zeroshot", zs, "protocol.inference.crop_size", lambda: o.notebook(zs, r'"\s*side: int = (\d+)'), zs,
        int)
    add("ade20k-zeroshot", zs, "protocol.inference.stride", lambda: o.notebook(zs, r'"\s*stride: int = (\d+)'), zs,
        int)
    add("ade20k-zeroshot", zs, "dataset.reduce_zero_label",
        lambda: o.notebook(zs, r"IGNORE_ZERO_LABEL = (True|False)", after=r'"class Ade20k\('), zs,
        lambda v: v == "True")

    def templates(value: Any) -> Any:
        """dinobench names CLIP's 80 ImageNet templates "openai_imagenet" (with {} for the notebook's {0});
        any other list stays a list (and then differs)."""
        from dinobench.text.inference import resolve_templates

        written = [t.replace("{0}", "{}") for t in value]
        return "openai_imagenet" if written == resolve_templates("openai_imagenet") else written

    add("ade20k-zeroshot", zs, "protocol.templates", lambda: o.notebook_literal(zs, "PROMPT_TEMPLATES"), zs, templates)

    def patch_tokens() -> tuple[str, int]:
        """Which of get_class_and_patch_tokens' outputs the notebook segments with: (class token, patch tokens
        after the dino.txt vision blocks, the backbone's patch tokens) (dinov3/eval/text/vision_tower.py)."""
        names, line = o.notebook(zs, r'"\s*([\w, ]+) = model\.visual_model\.get_class_and_patch_tokens\(')
        used, _ = o.notebook(zs, r'"\s*(\w+)\.reshape\(B, h_i // P')
        return {1: "head", 2: "backbone"}[[n.strip() for n in names.split(",")].index(used)], line

    add("ade20k-zeroshot", zs, "protocol.patch_tokens", patch_tokens, zs)
    # the notebook's model (hub entry dinov3_vitl16_dinotxt_tet1280d20h24l): its sizes
    dinotxt = "dinov3/hub/dinotxt.py"
    for key, argument in (("embed_dim", "embed_dim"), ("vision_head_blocks", "vision_model_num_head_blocks"),
                          ("context_length", "context_length"), ("vocab_size", "vocab_size"),
                          ("text_dim", "dim"), ("text_heads", "num_heads"), ("text_layers", "num_layers")):
        add("ade20k-zeroshot", zs, f"protocol.model.{key}",
            lambda argument=argument: o.in_function(dinotxt, "dinov3_vitl16_dinotxt_tet1280d20h24l",
                                                    rf"^\s*{argument}=(\d+),"), dinotxt, int)
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
