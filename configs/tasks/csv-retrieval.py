_base_ = ["../_base_/protocols/text_retrieval.py"]
task = dict(description="dino.txt image-text retrieval on your captions; --data-root <dir with train.csv, val.csv "
                        "(image_path,caption)>")
dataset = dict(type="caption_csv", root=None)
transform = dict(resize=224, crop=224, interpolation="bicubic")
