"""Registers the logistic-regression protocol (implementation: :mod:`dinobench.protocols.logreg`)."""

from dinobench.hookspecs import hookimpl
from dinobench.registry import ProtocolRegistry


@hookimpl
def dinobench_register_protocols(registry: ProtocolRegistry) -> None:
    """The logistic-regression protocol."""
    registry.add("logreg", "dinobench.protocols.logreg:LogRegProtocol",
                 description="official DINOv3 logistic regression: sklearn L2 lbfgs, C grid 10^[-6,5], refit")
