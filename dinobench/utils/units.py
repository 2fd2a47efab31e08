"""Human-readable numbers shared by listings and reports (no heavy imports: ``dinobench list`` uses them)."""

from __future__ import annotations


def format_params(n: int | None, missing: str = "–") -> str:
    """Parameter count as ``0.8M`` / ``1.10B`` (``missing`` when unknown)."""
    if n is None:
        return missing
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M"
