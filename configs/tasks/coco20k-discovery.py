task = dict(description="unsupervised object discovery on COCO20k (LOST's 19,817 COCO 2014 train images) (CorLoc of TokenCut / LOST); --data-root <dir with annotations/, train2014/, coco_20k_filenames.txt>")
dataset = dict(type="coco20k", root=None)
# Defaults (method="tokencut", tau=0.2, eps=1e-5, k_patches=100) live in dinobench.protocols.discovery.DiscoveryConfig;
# both methods always run (CorLoc_tokencut, CorLoc_lost). Images are resized to transform.size square.
protocol = dict(type="discovery")
transform = dict(size=448)
# CPU smoke run (python -m dinobench.synthetic coco20k /tmp/coco20k):
#   dinobench run --backbone vit_tiny --task coco20k-discovery --data-root /tmp/coco20k --cfg-options \
#     backbone.embed_dim=64 backbone.depth=2 backbone.num_heads=2 transform.size=64
