"""The examples shown under ``dinobench --help`` and ``dinobench run --help``."""

EPILOG = """examples:
  dinobench list tasks
  dinobench run --backbone vit_tiny --task digits-knn
  dinobench run --backbone vitl16 --weights dinov3_vitl16.pth --task imagenet-knn --data-root /data/imagenet
  dinobench run --backbone vit_tiny --task digits-knn --cfg-options protocol.temperature=0.1 backbone.depth=2
  dinobench export --backbone vitl16 --weights dinov3_vitl16.pth --output vitl16-hf
"""
