_base_ = ["../_base_/protocols/foreground.py"]
task = dict(description="foreground segmentation on your image + mask folders (AP, mIoU); --data-root <dir with train/ and val/>")
dataset = dict(type="foreground_folder", root=None)
# CPU smoke run (python -m dinobench.synthetic foreground_folder /tmp/fg):
#   dinobench run --backbone vit_tiny --task folder-foreground --data-root /tmp/fg --cfg-options \
#     backbone.embed_dim=64 backbone.depth=2 backbone.num_heads=2 transform.size=64 protocol.Cs=[0.01,1.0]
