# Any ImageFolder dataset: <data-root>/train/<class>/<images>, <data-root>/val/<class>/<images>
dataset = dict(type="folder", root=None, train_split="train", val_split="val")
transform = dict(resize=256, crop=224, interpolation="bicubic")
