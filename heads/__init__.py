"""Task heads (pure PyTorch, CPU-runnable), one folder or module per head family, and the parts they share."""


def build_depther(backbone, **cfg):  # noqa: ANN001, ANN201 - thin lazy wrapper, see dinobench.heads.depther
    """The official-layout depther (``dinobench.heads.depther.build_depther``; keywords = ``DecoderConfig`` fields)."""
    from dinobench.heads.depther import build_depther as build

    return build(backbone, **cfg)
