task = dict(description="keypoint correspondence on your image pairs (PCK@alpha, recall at 5/10/20 px); --data-root <dir with pairs.json>")
dataset = dict(type="pairs", root=None, file="pairs.json")
protocol = dict(type="correspondence", pixel_thresholds=[5, 10, 20])
transform = dict(size=448)
# CPU smoke run (python -m dinobench.synthetic pairs /tmp/pairs):
#   dinobench run --backbone vit_tiny --task pairs-correspondence --data-root /tmp/pairs --cfg-options \
#     backbone.embed_dim=64 backbone.depth=2 backbone.num_heads=2 transform.size=64
