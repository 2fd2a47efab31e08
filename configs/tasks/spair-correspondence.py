task = dict(description="SPair-71k semantic keypoint correspondence (PCK@0.05/0.1/0.15 of the target box); --data-root <SPair-71k>")
dataset = dict(type="spair", root=None, split="test")
# Defaults (alphas=[0.05, 0.1, 0.15], keypoint_convention="reference" (DIFT's eval_spair.py), refine="none",
# main_metric="PCK@0.1") live in dinobench.protocols.correspondence.CorrespondenceConfig; e.g.
# protocol.refine=soft_argmax, or protocol.keypoint_convention=cell_centre protocol.resolution=224 (v1's matching)
protocol = dict(type="correspondence")
transform = dict(size=448)
# CPU smoke run (python -m dinobench.synthetic spair /tmp/spair):
#   dinobench run --backbone vit_tiny --task spair-correspondence --data-root /tmp/spair --cfg-options \
#     backbone.embed_dim=64 backbone.depth=2 backbone.num_heads=2 transform.size=64
