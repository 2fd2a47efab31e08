"""Registers the built-in CLI commands (implementations: :mod:`dinobench.commands`), exactly as a third-party
plugin registers its own; ``dinobench.cli`` only parses and dispatches."""

from __future__ import annotations

from dinobench.hookspecs import hookimpl
from dinobench.registry import CommandRegistry


#: the built-in commands (``dinobench.commands.<name>``) and their one-line help
BUILTIN_COMMANDS = {
    "list": "list backbones, tasks, heads, datasets, protocols, feature kinds, commands or plugins",
    "run": "evaluate a backbone on a task and write result.json",
    "config": "print a task's fully resolved config, its recipe (official or what differs) and config hash",
    "export": "save a backbone as a Hugging Face directory or official .pth, or a head trained by a run in the "
              "official layout (--run)",
    "train": "SSL-pretrain a backbone (DINO + iBOT + KoLeo, Gram, distillation) or align a dino.txt text tower "
             "(recipe='dinotxt')",
    "report": "leaderboard + per-task tables and plots (Markdown, CSV, HTML)",
    "check": "compare results with a baseline: exit 1 on regressed or missing",
    "demo": "SSL-pretrain a tiny ViT on real digits, evaluate it vs random init, write the report (no downloads, a "
            "few CPU minutes)",
    "visualize": "PCA maps (rainbow figures) of a backbone's patch features for your images",
}


@hookimpl
def dinobench_register_commands(registry: CommandRegistry) -> None:
    """list, run, config, export, train, report, check, demo, visualize."""
    for name, help_text in BUILTIN_COMMANDS.items():
        module = f"dinobench.commands.{name}"
        registry.add(name, configure=f"{module}:configure", run=f"{module}:run", help=help_text)
