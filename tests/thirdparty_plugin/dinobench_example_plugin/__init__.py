"""Example third-party dinobench plugin: registers backbone ``patchpool`` and task ``digits16-knn``.

It uses only the public extension contract (``dinobench.hookspecs``); nothing in dinobench's
core knows about it.
"""

from dinobench.hookspecs import hookimpl


@hookimpl
def dinobench_register_backbones(registry):
    registry.add("patchpool", "dinobench_example_plugin.model:PatchPool", family="example",
                 patch_size=4, embed_dim=48, description="average-pooled pixel patches (example plugin)")


@hookimpl
def dinobench_register_tasks(registry):
    registry.add("digits16-knn", {
        "dataset": {"type": "digits", "val_fraction": 0.2, "split_seed": 0},
        "transform": {"resize": 16, "crop": 16, "interpolation": "bilinear"},
        "protocol": {"type": "knn", "nb_knn": [1, 5], "temperature": 0.07},
        "features": {"batch_size": 128, "num_workers": 0},
        "task": {"description": "digits at 16 px, 1-NN and 5-NN (example plugin)"},
    })
