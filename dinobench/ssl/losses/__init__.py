"""SSL losses, one per file: DINO (CLS), iBOT (masked patches), KoLeo, Gram anchoring."""

from dinobench.ssl.losses.dino import DINOLoss
from dinobench.ssl.losses.gram import GramLoss
from dinobench.ssl.losses.ibot import IBOTPatchLoss
from dinobench.ssl.losses.koleo import KoLeoLoss, KoLeoLossDistributed

__all__ = ["DINOLoss", "GramLoss", "IBOTPatchLoss", "KoLeoLoss", "KoLeoLossDistributed"]
