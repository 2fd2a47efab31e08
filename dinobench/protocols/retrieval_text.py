"""Image <-> text retrieval with a dino.txt head (COCO 5k / Flickr30k style): recall at K in both directions.

Every ``val`` image and caption is embedded (L2-normalised); image -> text: an image scores a hit at K when any of
its captions is among the K most similar captions; text -> image: a caption scores a hit when its image is among
the K most similar images. R@1/5/10 (percent) for both, and their mean (``rsum / 6``) as the main metric. Scores
are computed in chunks of ``chunk_size`` queries (never the full matrix at once for large sets).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch.utils.data import DataLoader

from dinobench.context import RunContext
from dinobench.data.transforms import build_eval_transform
from dinobench.errors import ConfigError
from dinobench.protocol import Protocol, ProtocolResult
from dinobench.text.inference import DinoTxtSizes, load_dinotxt
from dinobench.text.tokenizer import tokenize


def recall_at_k(image_emb: torch.Tensor, text_emb: torch.Tensor, text_to_image: Sequence[int],
                ks: Sequence[int] = (1, 5, 10), chunk_size: int = 1024) -> dict[str, float]:
    """``i2t_R@k`` and ``t2i_R@k`` (percent) of normalised ``[N_img, D]`` / ``[N_txt, D]`` embeddings, where caption
    ``j`` belongs to image ``text_to_image[j]``."""
    owner = torch.as_tensor(list(text_to_image), dtype=torch.long)
    if len(owner) != len(text_emb):
        raise ValueError(f"text_to_image has {len(owner)} entries for {len(text_emb)} captions")
    kmax = max(ks)
    i2t = {k: 0 for k in ks}
    for start in range(0, len(image_emb), chunk_size):
        scores = image_emb[start:start + chunk_size] @ text_emb.T
        top = owner[scores.topk(min(kmax, scores.shape[1]), dim=1).indices.cpu()]  # image of each retrieved caption
        mine = torch.arange(start, start + len(scores))[:, None]
        for k in ks:
            i2t[k] += int((top[:, :k] == mine).any(1).sum())
    t2i = {k: 0 for k in ks}
    for start in range(0, len(text_emb), chunk_size):
        scores = text_emb[start:start + chunk_size] @ image_emb.T
        top = scores.topk(min(kmax, scores.shape[1]), dim=1).indices.cpu()
        target = owner[start:start + len(scores)][:, None]
        for k in ks:
            t2i[k] += int((top[:, :k] == target).any(1).sum())
    out = {f"i2t_R@{k}": 100.0 * i2t[k] / len(image_emb) for k in ks}
    out.update({f"t2i_R@{k}": 100.0 * t2i[k] / len(text_emb) for k in ks})
    out["mean_recall"] = sum(out.values()) / len(out)
    return out


@dataclass
class TextRetrievalConfig:
    """``protocol=dict(type="text_retrieval", head_weights=PATH, model=...)``."""

    model: DinoTxtSizes = field(default_factory=DinoTxtSizes)
    head_weights: str | None = None  # the dino.txt checkpoint (required to run)
    ks: list[int] = field(default_factory=lambda: [1, 5, 10])
    batch_size: int = 64  # runtime key
    chunk_size: int = 1024  # runtime key


class TextRetrievalProtocol(Protocol):
    """Image <-> text recall of a dino.txt head on the ``val`` captions."""

    name = "text_retrieval"
    version = "1"
    Config = TextRetrievalConfig
    runtime_keys = ("batch_size", "chunk_size")
    file_keys = ("head_weights",)

    def validate(self) -> None:  # noqa: D102
        if not self.config.ks or any(k < 1 for k in self.config.ks):
            raise ConfigError(f"protocol.ks must be positive ranks, got {self.config.ks}")

    @torch.no_grad()
    def embeddings(self, model: Any, dataset: Any, device: str) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """(image embeddings in image order, caption embeddings, caption -> image index)."""
        images: dict[int, torch.Tensor] = {}
        texts, owner = [], []
        loader = DataLoader(dataset, batch_size=int(self.config.batch_size), shuffle=False,
                            collate_fn=lambda items: items)
        for items in loader:
            new = [it for it in items if it["image_index"] not in images]
            if new:
                batch = torch.stack([it["image"] for it in new]).to(device)
                for it, emb in zip(new, model.encode_image(batch, normalize=True).cpu()):
                    images.setdefault(it["image_index"], emb)
            tokens = tokenize([it["caption"] for it in items], self.config.model.context_length).to(device)
            texts.append(model.encode_text(tokens, normalize=True).cpu())
            owner += [it["image_index"] for it in items]
        order = sorted(images)
        position = {index: i for i, index in enumerate(order)}
        return torch.stack([images[i] for i in order]), torch.cat(texts), [position[i] for i in owner]

    def run(self, ctx: RunContext) -> ProtocolResult:
        """Embed ``val`` and report recall at ``ks`` both ways."""
        model = load_dinotxt(ctx, self.config.model, self.config.head_weights, "retrieval")
        val = ctx.dataset("val")
        # the runner transforms labelled datasets only: caption datasets get the task's eval transform here
        val.transform = build_eval_transform(ctx.cfg.get("transform") or {}, ctx.image_mean, ctx.image_std)
        image_emb, text_emb, owner = self.embeddings(model, val, ctx.device)
        metrics = recall_at_k(image_emb, text_emb, owner, self.config.ks, int(self.config.chunk_size))
        return ProtocolResult(metrics, "mean_recall", higher_is_better=True)
