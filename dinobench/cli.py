"""The ``dinobench`` command line: ``main()`` parses and dispatches. Every command — the built-in ones
(:mod:`dinobench.commands`, registered by :mod:`dinobench.plugins.commands`) and a plugin's — is a registered
``configure(parser)`` + ``run(args)`` pair (hook ``dinobench_register_commands``); only the command named on the
command line is imported and configured, so ``dinobench list`` stays fast.

Exit codes: 0 success, 2 bad usage or input (one line on stderr; ``--debug`` for the
traceback), 1 unexpected internal error.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from typing import Sequence

import dinobench
from dinobench.commands.epilog import EPILOG
from dinobench.errors import DinobenchError

logger = logging.getLogger("dinobench")


class _OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line on stderr (exit 2)."""

    def error(self, message: str) -> None:  # noqa: D102
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(2)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser: every registered command is listed; the one named in ``argv`` (if any) is configured
    by its ``configure(parser)``."""
    from dinobench.plugin_manager import get_registries
    from dinobench.registry import resolve_object

    parser = _OneLineParser(prog="dinobench", description="Benchmark DINOv3-style vision backbones.",
                            epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"dinobench {dinobench.__version__}")
    parser.add_argument("--debug", action="store_true", help="debug logging and full tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_OneLineParser)
    chosen = next((a for a in (argv if argv is not None else sys.argv[1:]) if not a.startswith("-")), None)
    for spec in get_registries().commands:
        first_party = spec.source.startswith("dinobench.")
        p_cmd = sub.add_parser(spec.name, help=spec.help if first_party else f"{spec.help} [plugin {spec.source}]")
        p_cmd.set_defaults(_command_run=spec.run)
        if spec.name == chosen:
            try:
                resolve_object(spec.configure)(p_cmd)
            except Exception as exc:  # a broken plugin command must not take the other commands down
                if first_party:
                    raise
                raise DinobenchError(f"plugin command {spec.name!r} ({spec.source}) failed to set up its arguments: "
                                     f"{type(exc).__name__}: {exc}") from exc
    return parser


def _include(folders: list[str]) -> None:
    """``--include-path``: the folders' task files join the registered tasks (first given, first searched)."""
    from dinobench.plugin_manager import get_registries
    from dinobench.tasks import add_include_path

    for folder in reversed(folders):
        add_include_path(folder)
    get_registries.cache_clear()  # re-read with the new folders


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dinobench`` console script."""
    try:
        parser = build_parser(argv)
    except DinobenchError as exc:
        sys.stderr.write(f"dinobench: error: {exc}\n")
        return exc.exit_code
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO, format="%(message)s",
                        stream=sys.stderr)
    if not args.debug:
        logging.getLogger("mmengine").setLevel(logging.WARNING)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        if getattr(args, "include_path", None):
            _include(args.include_path)
        from dinobench.registry import resolve_object

        return int(resolve_object(args._command_run)(args) or 0)
    except DinobenchError as exc:
        if args.debug:
            traceback.print_exc()
        message = " ".join(str(exc).split("\n")[0].split())
        sys.stderr.write(f"dinobench {args.command}: error: {message}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("dinobench: interrupted\n")
        return 130
    except BrokenPipeError:  # `dinobench list | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # a full disk (ENOSPC), a read-only or vanished folder: one line, not a traceback
        if args.debug:
            traceback.print_exc()
        where = f"{exc.filename}: " if exc.filename else ""
        sys.stderr.write(f"dinobench {args.command}: error: {where}{exc.strerror or exc} "
                         f"(errno {exc.errno}); free space or choose another folder\n")
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
