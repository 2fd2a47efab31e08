"""Procedural tiny datasets in the real on-disk layouts, for CPU tests, smoke runs and the demo (never a
benchmark number). Each family registers its writers through ``dinobench_register_synthetic_writers``
(``registry.add(kind, "module:writer", size=..., fixed={...})``); ``python -m dinobench.synthetic KIND OUT_DIR``
writes one and prints its ``--data-root``.

``writer(out_dir, n_train=..., n_val=..., size=..., seed=..., **fixed) -> Path``: every sample comes from its own
seeded generator, so the same call writes byte-identical files. :mod:`~dinobench.synthetic.dense` holds the
shared textures and the segmentation/depth layouts; the other modules one family each.
"""
