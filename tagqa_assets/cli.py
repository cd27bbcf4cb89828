"""``tagqa``: command-line access to the store and the registry without the UI.

Each stage contributes its subcommands through a ``register(subparsers)`` function in its
``commands`` module; this module only assembles them and maps errors to exit codes.
Handlers get the code location's own resources, resolved, as ``args.resources``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import dagster as dg

from tagqa_assets import run_recovery
from tagqa_assets import settings as settings_module
from tagqa_assets.deployment import commands as deployment_commands
from tagqa_assets.ingestion import commands as ingestion_commands
from tagqa_assets.labeling import commands as labeling_commands
from tagqa_assets.monitoring import commands as monitoring_commands
from tagqa_assets.registry import commands as registry_commands
from tagqa_assets.resources import resolve_resources

COMMAND_MODULES = [ingestion_commands, labeling_commands, registry_commands, deployment_commands,
                   monitoring_commands]


def build_parser() -> argparse.ArgumentParser:
    """The full ``tagqa`` argument parser."""
    parser = argparse.ArgumentParser(prog="tagqa", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        module.register(subparsers)
    _register_settings(subparsers)
    _register_runs(subparsers)
    return parser


def _register_runs(subparsers: argparse._SubParsersAction) -> None:
    command = subparsers.add_parser("runs", help="Dagster runs of this instance ($DAGSTER_HOME)")
    commands = command.add_subparsers(dest="runs_command", required=True)
    orphaned = commands.add_parser("fail-orphaned", help="mark failed the runs a stopped stack left in progress "
                                                          "(their process is gone); run.sh does this at start")
    orphaned.add_argument("--grace-seconds", type=float, default=run_recovery.DEFAULT_GRACE_SECONDS,
                          help="a run with no recorded process is left alone until it has not changed for this "
                               "long (default %(default)s)")
    orphaned.set_defaults(handler=_fail_orphaned_runs, needs_resources=False)


def _fail_orphaned_runs(args: argparse.Namespace) -> int:
    if not os.environ.get("DAGSTER_HOME"):
        raise ValueError("DAGSTER_HOME is not set: it names the Dagster instance whose runs to check "
                         "(make run sets it to .tagqa/dagster)")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # a new instance's schema set-up, line by line
    with dg.DagsterInstance.get() as instance:
        marked = run_recovery.fail_orphaned_runs(instance, grace_seconds=args.grace_seconds)
    for run in marked:
        print(f"run {run.run_id} ({run.job_name}) was left {run.was} by a stopped stack "
              f"({f'its process {run.pid} is gone' if run.pid else 'no process recorded'}): now {run.now}")
    if not marked:
        print("no run was left in progress by a stopped stack")
    return 0


def _register_settings(subparsers: argparse._SubParsersAction) -> None:
    command = subparsers.add_parser("settings", help="show the settings in force and where each came from")
    command.add_argument("--all", action="store_true", help="also list settings left at their default")
    command.set_defaults(handler=_show_settings, needs_resources=False)
    commands = command.add_subparsers(dest="settings_command")
    template = commands.add_parser("template", help="print a commented settings file holding no values")
    template.set_defaults(handler=lambda args: print(settings_module.template(), end="") or 0)
    init = commands.add_parser("init", help=f"write {settings_module.SETTINGS_FILE} (commented) unless present; "
                                            "move tagqa settings out of an old .env")
    init.set_defaults(handler=_init_settings)
    shell = commands.add_parser("shell", help="print `export NAME=value` lines for NAMEs, in force now")
    shell.add_argument("names", nargs="+")
    shell.set_defaults(handler=lambda args: print(settings_module.shell_exports(args.settings, args.names)) or 0)


def _show_settings(args: argparse.Namespace) -> int:
    current: settings_module.Settings = args.settings
    print(f"settings file: {current.settings_file or f'none ({settings_module.SETTINGS_FILE} not found)'}")
    for spec in settings_module.specs():
        source = current.source(spec.attribute)
        if source == settings_module.DEFAULT_SOURCE and not args.all:
            continue
        value = getattr(current, spec.attribute)
        shown = "(set)" if spec.secret and source != settings_module.DEFAULT_SOURCE else repr(value)
        print(f"{spec.name}={shown}  [{source}]")
    if not args.all:
        print("(settings at their default are not listed: tagqa settings --all)")
    return 0


def _init_settings(args: argparse.Namespace) -> int:
    cwd = Path.cwd()
    target = cwd / settings_module.SETTINGS_FILE
    existed = target.exists()
    for line in settings_module.migrate_dotenv(cwd):
        print(line)
    if existed:
        print(f"{target} exists: kept (tagqa settings template prints a fresh one)")
    elif not target.exists():
        target.write_text(settings_module.template())
        print(f"wrote {target} (commented: every setting at its default)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the process exit code (2 for bad input, 1 for failures)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        if getattr(args, "settings_command", None) == "init":
            return int(args.handler(args) or 0)  # before reading settings: it repairs them
        args.settings = settings_module.load_settings()
        if not getattr(args, "needs_resources", True) or getattr(args, "settings_command", None):
            return int(args.handler(args) or 0)
        args.resources = resolve_resources(args.settings)
        return int(args.handler(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        print(f"tagqa {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
