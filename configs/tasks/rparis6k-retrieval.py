_base_ = ["../_base_/protocols/revisited_retrieval.py"]
task = dict(description="revisited Paris 6k instance retrieval (mAP E/M/H); --data-root <dir with jpg/ and gnd_rparis6k.pkl>")
dataset = dict(type="rparis6k", root=None)
# CPU smoke run (python -m dinobench.synthetic rparis6k /tmp/rpa):
#   dinobench run --backbone vit_tiny --task rparis6k-retrieval --data-root /tmp/rpa/rparis6k --cfg-options \
#     backbone.embed_dim=64 backbone.depth=2 backbone.num_heads=2 transform.max_size=64
