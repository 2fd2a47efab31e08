# dino.txt zero-shot classification: class embeddings = mean of the normalised embeddings of the prompts
# (templates="openai_imagenet": CLIP's 80 ImageNet templates) per class; top-1/top-5 of cosine scores on val.
# head_weights (required): a dino.txt checkpoint; model: its sizes (defaults: the released ViT-L model).
# Defaults: dinobench.protocols.zeroshot.ZeroShotConfig; state only what differs.
protocol = dict(type="zeroshot")
