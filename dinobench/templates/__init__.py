"""The two protocol templates a family builds on:

- :class:`~dinobench.templates.trained_head.TrainedHeadProtocol` — data -> joint transform -> backbone / neck / head
  -> the one engine -> sharded metric (every first-party dense family, a plugin's own head);
- :class:`~dinobench.templates.feature_probe.FeatureProbeProtocol` — probes on cached features ``ctx.features``
  (kNN, logistic regression, retrieval, ...).

Both are exported by :mod:`dinobench.api`; import the submodules directly (this package imports nothing).
"""
