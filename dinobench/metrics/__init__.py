"""Every metric a protocol reports, importable by any protocol (no protocol imports another's module):

- :mod:`~dinobench.metrics.classification` (top-k, scikit-learn top-1/top-5),
- :mod:`~dinobench.metrics.dense` (segmentation mIoU via mmseg, depth, binary foreground mIoU, canopy height),
- a family's own metric module (e.g. COCOeval AP), :mod:`~dinobench.metrics.retrieval` (revisited
  Oxford/Paris and label retrieval), :mod:`~dinobench.metrics.tracking` (DAVIS J&F),
  :mod:`~dinobench.metrics.correspondence` (PCK), :mod:`~dinobench.metrics.discovery` (CorLoc),
- :mod:`~dinobench.metrics.sharded`: mergeable metrics evaluated over every rank (:func:`evaluate_sharded`).

Submodules are imported where used (this package imports nothing, so it costs nothing).
"""
