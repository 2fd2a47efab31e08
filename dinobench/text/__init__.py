"""dino.txt: image-text alignment on a frozen backbone.

- :func:`tokenize` / :class:`Tokenizer` - CLIP's BPE tokenizer, offline (equal to the official one);
- :func:`build_dinotxt` / :class:`DINOTxt` - the released model's architecture with the official state-dict keys.
"""

from dinobench.text.model import DINOTxt, build_dinotxt
from dinobench.text.tokenizer import Tokenizer, tokenize

__all__ = ["DINOTxt", "Tokenizer", "build_dinotxt", "tokenize"]
