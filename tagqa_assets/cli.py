"""``tagqa``: command-line access to the store and the registry without the UI.

Each stage contributes its subcommands through a ``register(subparsers)`` function in its
``commands`` module; this module only assembles them and maps errors to exit codes.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from dotenv import load_dotenv

from tagqa_assets.deployment import commands as deployment_commands
from tagqa_assets.ingestion import commands as ingestion_commands
from tagqa_assets.labeling import commands as labeling_commands
from tagqa_assets.monitoring import commands as monitoring_commands
from tagqa_assets.registry import commands as registry_commands

COMMAND_MODULES = [ingestion_commands, labeling_commands, registry_commands, deployment_commands,
                   monitoring_commands]


def build_parser() -> argparse.ArgumentParser:
    """The full ``tagqa`` argument parser."""
    parser = argparse.ArgumentParser(prog="tagqa", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the process exit code (2 for bad input, 1 for failures)."""
    # Same settings as the Dagster CLI, which loads .env from the working folder.
    load_dotenv(".env", override=False)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        return int(args.handler(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        print(f"tagqa {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
