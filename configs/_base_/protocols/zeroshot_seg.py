# dino.txt zero-shot segmentation (dinotxt_segmentation_inference.ipynb): class features = patch half of the
# prompt-ensemble text embeddings; cosine with normalised patch tokens; slide 384 / 192 with per-window softmax.
# head_weights (required): a dino.txt checkpoint. Defaults: dinobench.protocols.zeroshot_seg.ZeroShotSegConfig.
protocol = dict(type="zeroshot_seg")
