_base_ = ["../_base_/datasets/ade20k.py", "../_base_/protocols/zeroshot_seg.py"]
task = dict(description="dino.txt zero-shot segmentation on ADE20K (the official notebook's protocol); "
                        "--data-root <ADEChallengeData2016>",
            official="notebooks/dinotxt_segmentation_inference.ipynb")
# The notebook's resolution: short side 512 resized bicubic (dinotxt_segmentation_inference.ipynb, its resize
# transform), windows of 384 every 192 px. (It truncates the long side where dinobench rounds: <= 1 pixel.) CPU smoke run on the synthetic ADE20K
# with a tiny head (dinobench train ... or any dino.txt head of matching sizes):
#   dinobench run --backbone vit_tiny --task ade20k-zeroshot --data-root /tmp/ade/ADEChallengeData2016 --cfg-options \
#     backbone.embed_dim=64 backbone.depth=2 backbone.num_heads=2 protocol.head_weights=/tmp/dinotxt/dinotxt_head.pth \
#     protocol.model.embed_dim=128 protocol.model.text_dim=64 protocol.model.text_heads=2 protocol.model.text_layers=1 \
#     protocol.model.context_length=16 protocol.model.vision_head_blocks=1 transform.eval.scale=64 \
#     protocol.inference.crop_size=48 protocol.inference.stride=24
transform = dict(eval=dict(scale=512, interpolation="bicubic"))
