"""Command line: ``pdesurrogates SUBCOMMAND ...``.

Each subcommand lives in its own module under :mod:`pdesurrogates.commands` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (a callable taking the parsed
``argparse.Namespace`` and returning an exit code). Modules keep heavy imports inside ``func``
so that ``pdesurrogates --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import pdesurrogates
import pdesurrogates.commands as _commands
from pdesurrogates.errors import UserInputError

# Errors about what the user handed over: printed as one line (they name the file, key or argument).
# Anything else is a defect of the package and keeps its traceback.
USER_ERRORS = (UserInputError, FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError,
               NotADirectoryError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pdesurrogates",
        description="Learned surrogates of PDE solvers and learned linear-solver accelerators.",
    )
    parser.add_argument("--version", action="version", version=pdesurrogates.__version__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for info in sorted(pkgutil.iter_modules(_commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"pdesurrogates.commands.{info.name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as exc:
        print(f"pdesurrogates {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pdesurrogates {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
