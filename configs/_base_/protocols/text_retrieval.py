# dino.txt image <-> text retrieval: R@1/5/10 image->text (any of the image's captions) and text->image.
# head_weights (required): a dino.txt checkpoint; model: its sizes (defaults: the released ViT-L model).
# Defaults: dinobench.protocols.retrieval_text.TextRetrievalConfig; state only what differs.
protocol = dict(type="text_retrieval")
