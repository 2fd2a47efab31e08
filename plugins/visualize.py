"""Registers ``dinobench visualize`` (:mod:`dinobench.visualize_command`): PCA maps for your own images."""

from dinobench.hookspecs import hookimpl
from dinobench.registry import CommandRegistry


@hookimpl
def dinobench_register_commands(registry: CommandRegistry) -> None:
    """The visualize command."""
    registry.add("visualize", configure="dinobench.visualize_command:configure", run="dinobench.visualize_command:run",
                 help="PCA maps (rainbow figures) of a backbone's patch features for your images")
