"""SSL losses, one per file: DINO (CLS), iBOT (masked patches), KoLeo, Gram anchoring."""
