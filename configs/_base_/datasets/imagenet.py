# ImageNet-1k, official layout: <root>/train/<wnid>/*.JPEG, <root>/val/<wnid>/*.JPEG, labels.txt
dataset = dict(type="imagenet", root=None, train_split="train", val_split="val")
# official DINOv3 evaluation transform: resize 256 (bicubic) -> centre crop 224
transform = dict(resize=256, crop=224, interpolation="bicubic")
