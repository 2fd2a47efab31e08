_base_ = ["../_base_/datasets/folder.py", "../_base_/protocols/zeroshot.py"]
task = dict(description="dino.txt zero-shot classification on any ImageFolder dataset (class names = folder "
                        "names, '_' -> ' '); --data-root <dir with train/ and val/>")
# the official dino.txt image transform (notebooks/dinotxt_inference.ipynb): resize 512 -> centre crop 512, bicubic
transform = dict(resize=512, crop=512, interpolation="bicubic")
