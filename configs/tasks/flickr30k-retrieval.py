_base_ = ["../_base_/protocols/text_retrieval.py"]
task = dict(description="dino.txt image-text retrieval on the Flickr30k 1k test split (Karpathy); --data-root "
                        "<dir with dataset_flickr30k.json and flickr30k-images/>")
dataset = dict(type="karpathy_captions", root=None)
transform = dict(resize=224, crop=224, interpolation="bicubic")
