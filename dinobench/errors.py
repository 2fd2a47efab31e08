"""User-fixable errors. The CLI prints these as one line (no traceback) and exits with code 2."""

from __future__ import annotations


class DinobenchError(Exception):
    """Base class of every error a user can fix; the message is one actionable line."""

    exit_code = 2


class UnknownNameError(DinobenchError, KeyError):
    """A backbone, task, dataset or protocol name that no installed plugin registered."""

    def __init__(self, kind: str, name: str, suggestions: list[str], hint: str = "") -> None:
        self.kind, self.name, self.suggestions = kind, name, suggestions
        msg = f"unknown {kind} {name!r}"
        if suggestions:
            msg += "; did you mean " + " or ".join(repr(s) for s in suggestions) + "?"
        if hint:
            msg += f" ({hint})"
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class DataError(DinobenchError):
    """A dataset root or file that is missing, empty, inconsistent or unreadable."""


class WeightsError(DinobenchError):
    """A checkpoint that is missing, unreadable or does not fit the architecture."""


class ConfigError(DinobenchError):
    """A task/training config or a --cfg-options override that is invalid."""


class PluginError(DinobenchError):
    """A plugin that registered something inconsistent (e.g. a duplicate name)."""
