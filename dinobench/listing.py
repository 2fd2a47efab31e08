"""What ``dinobench list`` prints: one table (or JSON list) per registry, without importing torch for tasks."""

from __future__ import annotations

from typing import Any, Sequence

LIST_SECTIONS = ["backbones", "tasks", "heads", "datasets", "protocols", "feature-kinds", "schedules", "optimizers",
                 "head-layouts", "synthetic-writers", "commands", "plugins"]


def text_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    """``rows`` as a plain-text table with upper-case headers, columns padded to their widest cell."""
    widths = {c: max([len(c)] + [len(str(r.get(c, ""))) for r in rows]) for c in columns}
    lines = ["  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip()]
    lines += ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns).rstrip() for r in rows]
    return "\n".join(lines)


def list_rows(what: str) -> tuple[list[dict[str, Any]], list[str]]:
    """(rows, columns) of one ``dinobench list`` section (imports are lazy: listing tasks must stay torch-free)."""
    from dinobench.plugin_manager import get_registries, plugin_rows

    reg = get_registries()
    if what == "backbones":
        from dinobench.utils.units import format_params

        def params(spec: Any) -> int | None:  # counted on the meta device (torch) only when not registered
            if spec.params is not None or spec.source.startswith("dinobench."):
                return spec.params
            from dinobench.backbones.factory import count_parameters

            return count_parameters(spec.name)

        rows = [{"name": s.name, "family": s.family, "params": format_params(params(s), "-"),
                 "patch": s.patch_size or "-", "dim": s.embed_dim or "-", "source": s.source,
                 "description": s.description}
                for s in reg.backbones]
        return rows, ["name", "family", "params", "patch", "dim", "source", "description"]
    if what == "tasks":
        from dinobench.tasks import task_summary

        rows = []
        for s in reg.tasks:
            summary = task_summary(s.config)
            rows.append({"name": s.name, "protocol": summary["protocol"],
                         "dataset": "+".join(summary["datasets"]) or "?", "recipe": summary["official"] or "-",
                         "source": s.source, "description": s.description or summary["description"]})
        return rows, ["name", "protocol", "dataset", "recipe", "source", "description"]
    if what == "heads":
        rows = [{"name": s.name, "backbone": s.backbone, "tasks": ", ".join(s.tasks),
                 "config": " ".join(f"{k.removeprefix('protocol.').removeprefix('head.')}={v}"
                                   for k, v in s.options.items()) or "-",
                 "file": s.file or "-", "source": s.source, "description": s.description} for s in reg.heads]
        return rows, ["name", "backbone", "tasks", "config", "file", "source", "description"]
    if what == "datasets":
        return [{"name": s.name, "source": s.source, "description": s.description} for s in reg.datasets], \
            ["name", "source", "description"]
    if what == "protocols":
        return [{"name": s.name, "source": s.source, "description": s.description}
                for s in reg.protocols], ["name", "source", "description"]
    if what == "feature-kinds":
        return [{"name": s.name, "source": s.source, "description": s.description} for s in reg.feature_kinds], \
            ["name", "source", "description"]
    if what in ("schedules", "optimizers", "head-layouts", "synthetic-writers"):
        registry = getattr(reg, what.replace("-", "_"))
        return [{"name": s.name, "source": s.source, "description": s.description} for s in registry], \
            ["name", "source", "description"]
    if what == "commands":
        return [{"name": s.name, "source": s.source, "description": s.help} for s in reg.commands], \
            ["name", "source", "description"]
    return plugin_rows(), ["plugin", "package", "version"]
