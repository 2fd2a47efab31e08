"""``dinobench config TASK [--backbone B] [--head H] [--cfg-options ...] [--json]``: the fully resolved task config
(every default, the per-backbone ones and a released head's architecture included), its recipe provenance and its
protocol hash, without reading data or building a model: see a recipe before spending GPU hours on it."""

from __future__ import annotations

import argparse
import json


def configure(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``dinobench config``."""
    parser.add_argument("task", help="task name (dinobench list tasks) or a task config file PATH.py")
    parser.add_argument("--backbone", default=None,
                        help="apply the task's per-backbone defaults for this backbone (e.g. the detector's windows)")
    parser.add_argument("--head", default=None, help="a released head (dinobench list heads): its architecture options")
    parser.add_argument("--cfg-options", nargs="+", action="extend", default=None, metavar="KEY=VALUE",
                        help="override task config keys, as dinobench run")
    parser.add_argument("--include-path", action="append", default=None, metavar="DIR",
                        help="also register every DIR/<name>.py as task <name> (repeatable; $DINOBENCH_TASK_DIRS)")
    parser.add_argument("--json", action="store_true", help="JSON instead of YAML")


def run(args: argparse.Namespace) -> int:
    """Print the resolved config, its recipe line and its protocol hash."""
    from dinobench.config import parse_options, protocol_hash
    from dinobench.plugin_manager import get_registries
    from dinobench.recipes import recipe_line
    from dinobench.resolve import head_architecture, protocol_class, recipe_of, resolve_task, runtime_keys
    from dinobench.tasks import find_task
    from dinobench.identity import hashed_config

    registries = get_registries()
    source = find_task(args.task, registries)
    options = parse_options(args.cfg_options)
    if args.backbone is not None:
        registries.backbones.get(args.backbone)  # an unknown name: one line with the closest one
    if args.head is not None:
        options = {**head_architecture(args.head, source.name), **options}
    cfg = resolve_task(args.task, options, args.backbone)
    recipe = recipe_of(source, cfg, args.backbone or "", args.head)
    cls = protocol_class(cfg["protocol"]["type"])
    # the protocol hash a run records adds the datasets' content fingerprint; this is its config part
    digest = protocol_hash(hashed_config(cfg, {}, cls), "", runtime_keys(cfg))
    summary = {"task": source.name, "protocol": cls.name, "protocol_version": str(cls.version),
               "config_hash": digest, "recipe": recipe or {"official": None}, "config": cfg}
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    import yaml

    print(f"# task {source.name}: protocol {cls.name} v{cls.version}, config hash {digest} "
          "(a run's protocol hash adds the datasets' fingerprint)")
    print(f"# {recipe_line(recipe)}")
    print(yaml.safe_dump(cfg, sort_keys=False, default_flow_style=None, width=110).rstrip())
    return 0
