"""Example third-party dinobench plugin, using only the public extension contract (``dinobench.hookspecs`` and
``dinobench.api``):

- backbone ``patchpool``;
- protocols ``example_head_probe`` (a neck + dict-returning head with ``postprocess``, trained on dinobench's
  engine) and ``example_grid_knn`` (kNN on this plugin's feature kind);
- feature kind ``pooled_grid`` (``[2, 2, D]`` per image, cached on disk as an N-D array);
- tasks ``digits16-knn``, ``digits16-headprobe`` (three named datasets) and ``digits16-gridknn``;
- CLI subcommand ``dinobench example-datasets TASK``;
- learning-rate schedule ``example_step_down`` (used by ``digits16-headprobe`` and ``blobs-maskhead``);
- a whole trained-head family: reader ``example_blobs`` (typed options and transform section, a synthetic writer),
  a joint ``tv_tensors`` transform, protocol ``example_mask_head`` on the trained-head template with a mergeable
  metric, head layout ``example_mask_head`` (``dinobench export --run``), task ``blobs-maskhead``.

Nothing in dinobench's core knows about it.
"""

from dinobench.hookspecs import hookimpl

DIGITS16 = {"transform": {"resize": 16, "crop": 16, "interpolation": "bilinear"},
            "features": {"batch_size": 128, "num_workers": 0}}


@hookimpl
def dinobench_register_backbones(registry):
    registry.add("patchpool", "dinobench_example_plugin.model:PatchPool", family="example",
                 patch_size=4, embed_dim=48, description="average-pooled pixel patches (example plugin)")


@hookimpl
def dinobench_register_protocols(registry):
    registry.add("example_head_probe", "dinobench_example_plugin.protocols:HeadProbeProtocol",
                 description="neck + dict head trained on the shared engine, top-1 on two named datasets")
    registry.add("example_grid_knn", "dinobench_example_plugin.protocols:GridKNNProtocol",
                 description="kNN on pooled_grid features")
    registry.add("example_mask_head", "dinobench_example_plugin.maskhead:MaskHeadProtocol",
                 description="foreground from patch tokens: a trained-head family from outside dinobench")


@hookimpl
def dinobench_register_feature_kinds(registry):
    registry.add("pooled_grid", "dinobench_example_plugin.kinds:pooled_grid",
                 description="last-layer patch tokens pooled to a 2x2 grid [2, 2, D] (example plugin)")


@hookimpl
def dinobench_register_tasks(registry):
    registry.add("digits16-knn", {
        "dataset": {"type": "digits", "val_fraction": 0.2, "split_seed": 0},
        "protocol": {"type": "knn", "nb_knn": [1, 5], "temperature": 0.07},
        "task": {"description": "digits at 16 px, 1-NN and 5-NN (example plugin)"}, **DIGITS16,
    })
    registry.add("digits16-headprobe", {
        "datasets": {"train": {"type": "digits", "from_split": "train"}, "val": {"type": "digits", "from_split": "val"},
                     # a third named dataset: another seeded split of the digits, its val part
                     "holdout": {"type": "digits", "from_split": "val", "split_seed": 1, "val_fraction": 0.1}},
        "protocol": {"type": "example_head_probe"},
        "train": {"max_iters": 60, "batch_size": 32, "checkpoint_every": 0, "eval_every": 0, "amp": None,
                  "optimizer": {"lr": 0.01, "weight_decay": 0.0},
                  "scheduler": {"type": "example_step_down", "warmup_iters": 0, "at": 0.75}},
        "task": {"description": "a neck + dict head on digits, evaluated on val and a holdout (example plugin)"},
        **DIGITS16,
    })
    registry.add("blobs-maskhead", {
        "dataset": {"type": "example_blobs", "root": None},
        "protocol": {"type": "example_mask_head"},
        "transform": {"size": 64, "flip_prob": 0.5},
        "train": {"max_iters": 40, "batch_size": 8, "checkpoint_every": 0, "eval_every": 0,
                  "optimizer": {"lr": 0.01, "weight_decay": 0.0},
                  "scheduler": {"type": "example_step_down", "warmup_iters": 0}},
        "task": {"description": "foreground IoU of a 1x1 head on patch tokens (example plugin; --data-root from "
                                "python -m dinobench.synthetic example_blobs DIR)"},
    })
    registry.add("digits16-gridknn", {
        "dataset": {"type": "digits", "val_fraction": 0.2, "split_seed": 0},
        "protocol": {"type": "example_grid_knn"},
        "task": {"description": "kNN on 2x2-pooled patch tokens (example plugin)"}, **DIGITS16,
    })


@hookimpl
def dinobench_register_datasets(registry):
    registry.add("example_blobs", "dinobench_example_plugin.blobs:build_blobs",
                 options="dinobench_example_plugin.blobs:BlobsOptions",
                 transform="dinobench_example_plugin.blobs:BlobsTransformConfig",
                 description="images with one coloured blob and its foreground mask (example plugin)")


@hookimpl
def dinobench_register_synthetic_writers(registry):
    registry.add("example_blobs", "dinobench_example_plugin.blobs:write_blobs", size=64)


@hookimpl
def dinobench_register_head_layouts(registry):
    registry.add("example_mask_head", "dinobench_example_plugin.maskhead:mask_head_files",
                 description="mask_head.pth + mask_head.json (example plugin)")


@hookimpl
def dinobench_register_schedules(registry):
    registry.add("example_step_down", "dinobench_example_plugin.schedules:step_down", defaults={"at": 0.8, "factor": 0.5},
                 description="constant, then halved (example plugin)")


@hookimpl
def dinobench_register_commands(registry):
    registry.add("example-datasets", configure="dinobench_example_plugin.commands:configure",
                 run="dinobench_example_plugin.commands:run", help="list the named datasets of a task")
