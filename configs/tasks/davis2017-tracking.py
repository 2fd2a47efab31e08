task = dict(description="DAVIS-2017 semi-supervised video segmentation by label propagation (J&F); --data-root <dir with JPEGImages/, Annotations/, ImageSets/>",
            official="notebooks/segmentation_tracking.ipynb")
dataset = dict(type="davis2017", root=None, year=2017, split="val", resolution="480p")
# Defaults (context=7, radius=12, neighborhood="circle", topk=5, temperature=0.2, upsample="nearest",
# bound_th=0.008) live in dinobench.protocols.tracking.TrackingConfig; frames: shorter side 960, whole patches.
protocol = dict(type="tracking")
transform = dict(short_side=960)
features = dict(batch_size=8)
# CPU smoke run (python -m dinobench.synthetic davis2017 /tmp/davis):
#   dinobench run --backbone vit_tiny --task davis2017-tracking --data-root /tmp/davis --cfg-options \
#     backbone.embed_dim=64 backbone.depth=2 backbone.num_heads=2 transform.short_side=128 protocol.radius=4
