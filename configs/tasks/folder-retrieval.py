_base_ = ["../_base_/protocols/retrieval.py"]
task = dict(description="label retrieval on your folders (mAP, mAP@R, R@k); --data-root <dir with query/ and database/>")
dataset = dict(type="retrieval_folder", root=None, query_split="query", database_split="database")
# CPU smoke run (python -m dinobench.synthetic retrieval_folder /tmp/rf):
#   dinobench run --backbone vit_tiny --task folder-retrieval --data-root /tmp/rf --cfg-options \
#     backbone.embed_dim=64 backbone.depth=2 backbone.num_heads=2 transform.resize=64 transform.crop=64
