_base_ = ["../_base_/protocols/revisited_retrieval.py"]
task = dict(description="revisited Oxford 5k instance retrieval (mAP E/M/H); --data-root <dir with jpg/ and gnd_roxford5k.pkl>")
dataset = dict(type="roxford5k", root=None)
# Multi-scale descriptors: protocol.multiscale=True; faiss ranking (pip install faiss-cpu): protocol.backend=faiss.
# CPU smoke run (python -m dinobench.synthetic roxford5k /tmp/rox):
#   dinobench run --backbone vit_tiny --task roxford5k-retrieval --data-root /tmp/rox/roxford5k --cfg-options \
#     backbone.embed_dim=64 backbone.depth=2 backbone.num_heads=2 transform.max_size=64
