"""Registers the built-in CLI commands (implementations: :mod:`dinobench.commands`), exactly as a third-party
plugin registers its own; ``dinobench.cli`` only parses and dispatches."""

from __future__ import annotations

from dinobench.hookspecs import hookimpl
from dinobench.registry import CommandRegistry


@hookimpl
def dinobench_register_commands(registry: CommandRegistry) -> None:
    """list, run, export, train, report, check, demo, visualize."""
    registry.add("list", configure="dinobench.commands.list:configure", run="dinobench.commands.list:run",
                 help="list backbones, tasks, heads, datasets, protocols, feature kinds, commands or plugins")
    registry.add("run", configure="dinobench.commands.run:configure", run="dinobench.commands.run:run",
                 help="evaluate a backbone on a task and write result.json")
    registry.add("export", configure="dinobench.commands.export:configure", run="dinobench.commands.export:run",
                 help="save a backbone as a Hugging Face directory or official .pth, or a head trained by a run in the official layout (--run)")
    registry.add("train", configure="dinobench.commands.train:configure", run="dinobench.commands.train:run",
                 help="SSL-pretrain a backbone (DINO + iBOT + KoLeo, Gram, distillation) or align a dino.txt text tower (recipe='dinotxt')")
    registry.add("report", configure="dinobench.commands.report:configure", run="dinobench.commands.report:run",
                 help="leaderboard + per-task tables and plots (Markdown, CSV, HTML)")
    registry.add("check", configure="dinobench.commands.check:configure", run="dinobench.commands.check:run",
                 help="compare results with a baseline: exit 1 on regressed or missing")
    registry.add("demo", configure="dinobench.commands.demo:configure", run="dinobench.commands.demo:run",
                 help="SSL-pretrain a tiny ViT on real digits, evaluate it vs random init, write the report (no downloads, a few CPU minutes)")
    registry.add("visualize", configure="dinobench.commands.visualize:configure",
                 run="dinobench.commands.visualize:run",
                 help="PCA maps (rainbow figures) of a backbone's patch features for your images")
