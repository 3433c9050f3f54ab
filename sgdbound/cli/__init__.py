"""The ``sgdbound`` command. Each group of subcommands lives in its own module with a ``register(sub)``
function adding its parsers; ``main`` dispatches to the ``func`` each parser sets."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

import sgdbound

__all__ = ["main", "build_parser", "COMMAND_MODULES", "add_threads_option", "set_threads"]

COMMAND_MODULES = (
    "sgdbound.cli.sim_commands",  # reproduce, simulate, bound
    "sgdbound.cli.kd_commands",  # distill, sweep, report
)


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    """``--threads N`` (default 1) for the commands that compute on the CPU."""
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op CPU threads (default 1: small batched programs on a shared CPU run far "
                             "slower with more; raise it for large CPU-only runs)")


def set_threads(args: argparse.Namespace) -> None:
    """``torch.set_num_threads(args.threads)``; ``ValueError`` unless it is >= 1."""
    import torch

    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sgdbound", description=sgdbound.__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"sgdbound {sgdbound.__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ValueError as error:
        print(f"sgdbound {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
