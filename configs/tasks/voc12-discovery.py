task = dict(description="unsupervised object discovery on Pascal VOC 2012 trainval (CorLoc of TokenCut / LOST); --data-root <VOC2012>")
dataset = dict(type="voc12", root=None)
# Defaults (method="tokencut", tau=0.2, eps=1e-5, k_patches=100) live in dinobench.protocols.discovery.DiscoveryConfig;
# both methods always run (CorLoc_tokencut, CorLoc_lost). Images are resized to transform.size square.
protocol = dict(type="discovery")
transform = dict(size=448)
# CPU smoke run (python -m dinobench.synthetic voc /tmp/voc):
#   dinobench run --backbone vit_tiny --task voc12-discovery --data-root /tmp/voc --cfg-options \
#     backbone.embed_dim=64 backbone.depth=2 backbone.num_heads=2 transform.size=64
