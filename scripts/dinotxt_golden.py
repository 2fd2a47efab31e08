"""Regenerate tests/fixtures/dinotxt_official.pt from an official DINOv3 checkout (facebookresearch/dinov3).

    python scripts/dinotxt_golden.py --official /path/to/dinov3 [--out tests/fixtures/dinotxt_official.pt]

Builds the official ``DINOTxt`` with the hub entry's ``DINOTxtConfig`` (``dinov3_vitl16_dinotxt_tet1280d20h24l``)
at toy size - a tiny dinobench DINOv3 ViT (patch 16, dim 64, 4 blocks) and an official ``TextTransformer``
(dim 64, 2 heads, 2 layers, context 77) - fills every tensor with :func:`dinobench.testing.deterministic_fill`,
and records in float32 on the CPU: the key layout, ``encode_image``, ``encode_image_with_patch_tokens`` and
``encode_text`` outputs on fixed inputs, and the official tokenizer's ids for a varied set of strings (the
vocabulary: the copy in ``open_clip_torch``). tests/text/test_dinotxt.py rebuilds it with dinobench's code and
compares. Needs ``torchmetrics`` and ``omegaconf`` (imported by the official package), not a GPU.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

from dinobench.backbones import create_backbone
from dinobench.testing import deterministic_fill, key_shapes, portable_noise
from dinobench.text.tokenizer import find_vocab

BACKBONE = dict(name="vitb16", embed_dim=64, depth=4, num_heads=2, ffn_ratio=2.0)
TEXT = dict(dim=64, num_heads=2, num_layers=2, context_length=77, vocab_size=49408)
EMBED_DIM = 96  # != 2 x 64: exercises the vision projection
SALT = "dinotxt-golden-v1"
IMAGE_SIZE = (32, 48)
#: strings for the tokenizer: unicode, emoji, HTML entities, whitespace runs, contractions, over-long text
TEXTS = ["a photo of a dog.", "Ünïcödé naïve café — “quotes” ‘single’", "emoji 🐶🚀👍🏽 and 日本語のテキスト",
         "&amp;lt;b&amp;gt;bold&amp;lt;/b&amp;gt; &quot;x&quot; &#39;y&#39;", "   lots \t of\n\n whitespace   runs  ",
         "don't can't we'll they're I'M it's", "numbers 1234567 3.14159 1e-5", "MiXeD CaSe UPPER lower",
         "mojibake: Ã©tÃ© â€œhelloâ€\x9d", " ".join(["overlong"] * 100), "", "<|startoftext|> special <|endoftext|>",
         "hyphen-ated_words/and\\slashes", "ß ﬁ ﬂ Ⅻ ①", "a photo of a {}.".format("tench")]


def tiny_backbone() -> torch.nn.Module:
    """The vision backbone the fixture was made with (weights filled deterministically)."""
    cfg = dict(BACKBONE)
    model = create_backbone(cfg.pop("name"), **cfg)
    return deterministic_fill(model, SALT + ":backbone").eval()


def images() -> torch.Tensor:
    """The fixed image batch (the same on every CPU)."""
    return portable_noise((2, 3, *IMAGE_SIZE), torch.Generator().manual_seed(7))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", required=True, help="path of a facebookresearch/dinov3 checkout")
    parser.add_argument("--out", default="tests/fixtures/dinotxt_official.pt")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(args.official).resolve()))
    from dinov3.eval.text.dinotxt_model import DINOTxt, DINOTxtConfig
    from dinov3.eval.text.text_transformer import TextTransformer
    from dinov3.eval.text.tokenizer import get_tokenizer

    config = DINOTxtConfig(  # the hub entry's settings
        embed_dim=EMBED_DIM, vision_model_freeze_backbone=True, vision_model_train_img_size=224,
        vision_model_use_class_token=True, vision_model_use_patch_tokens=True, vision_model_num_head_blocks=2,
        vision_model_head_blocks_drop_path=0.3, vision_model_use_linear_projection=False,
        vision_model_patch_tokens_pooler_type="mean", vision_model_patch_token_layer=1,
        text_model_freeze_backbone=False, text_model_num_head_blocks=0, text_model_head_blocks_is_causal=False,
        text_model_head_blocks_drop_prob=0.0, text_model_tokens_pooler_type="argmax",
        text_model_use_linear_projection=True, init_logit_scale=math.log(1 / 0.07), init_logit_bias=None,
        freeze_logit_scale=False)
    backbone = tiny_backbone()
    text = TextTransformer(context_length=TEXT["context_length"], vocab_size=TEXT["vocab_size"], dim=TEXT["dim"],
                           num_heads=TEXT["num_heads"], num_layers=TEXT["num_layers"], ffn_ratio=4, is_causal=True,
                           ls_init_value=None, dropout_prob=0.0)
    model = DINOTxt(model_config=config, vision_backbone=backbone, text_backbone=text)
    deterministic_fill(model, SALT)
    deterministic_fill(backbone, SALT + ":backbone")
    model.eval()
    tokenizer = get_tokenizer(str(find_vocab()))
    tokens = tokenizer.tokenize(TEXTS, context_length=77)
    with torch.no_grad():
        features, patch, backbone_patch = model.encode_image_with_patch_tokens(images())
        fixture = {
            "keys": key_shapes(model), "tokens": tokens, "texts": TEXTS,
            "encode_image": model.encode_image(images()), "encode_image_normalized": model.encode_image(images(), True),
            "image_features": features, "patch_tokens": patch, "backbone_patch_tokens": backbone_patch,
            "encode_text": model.encode_text(tokens), "encode_text_normalized": model.encode_text(tokens, True),
            "config": {"backbone": BACKBONE, "text": TEXT, "embed_dim": EMBED_DIM, "salt": SALT},
        }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    torch.save(fixture, args.out)
    print(f"wrote {args.out}: {len(fixture['keys'])} keys, image {tuple(features.shape)}, "
          f"text {tuple(fixture['encode_text'].shape)}")


if __name__ == "__main__":
    main()
