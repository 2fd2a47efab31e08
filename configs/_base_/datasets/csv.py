# Your own images listed in CSV manifests with a header `path,label` (label = class name; paths absolute
# or relative to the CSV's folder): --data-root DIR holding train.csv and val.csv, or
# --cfg-options dataset.train_csv=a.csv dataset.val_csv=b.csv. classes=[...] fixes the class order
# (default: sorted train labels) and requires every listed class to have training rows.
dataset = dict(type="csv", root=None, train_csv=None, val_csv=None, classes=None)
# official DINOv3 evaluation transform: resize 256 (bicubic) -> centre crop 224
transform = dict(resize=256, crop=224, interpolation="bicubic")
