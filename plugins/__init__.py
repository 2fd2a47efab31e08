"""First-party plugins: each module implements hooks of :mod:`dinobench.hookspecs`.

One protocol per file (``knn.py``, ...); ``backbones.py``, ``datasets.py`` and ``tasks.py``
register the shipped backbones, dataset readers and task configs. They are registered exactly
like third-party plugins, so they double as examples.
"""
