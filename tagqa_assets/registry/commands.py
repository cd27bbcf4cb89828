"""``tagqa models list | approve VERSION | reject VERSION``."""

from __future__ import annotations

import argparse
import json

from tagqa_assets.contracts.models import APPROVED, REJECTED

COLUMNS = ("version", "status", "model_id", "dataset_version", "test_map50", "test_map50_95", "precision", "labels",
           "gain_map50_95", "created_at", "reason")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``tagqa models ...`` to the ``tagqa`` parser."""
    models = subparsers.add_parser("models", help="list, approve and reject registered model versions")
    commands = models.add_subparsers(dest="models_command", required=True)
    listing = commands.add_parser("list", help="all model versions, oldest first; the champion is marked *")
    listing.add_argument("--json", action="store_true", help="print the registry entries as JSON")
    listing.set_defaults(handler=_list)
    for name, status in (("approve", APPROVED), ("reject", REJECTED)):
        command = commands.add_parser(name, help=f"set a version's status to {status}")
        command.add_argument("version", type=int)
        command.add_argument("--reason", default="", help="why (kept in the registry)")
        command.set_defaults(handler=_set_status, status=status)


def _list(args: argparse.Namespace) -> int:
    registry = args.resources.model_registry.open(args.resources.store.open())
    entries = registry.list_versions()
    if args.json:
        print(json.dumps([entry.to_dict() for entry in entries], indent=2))
        return 0
    if not entries:
        print(f"no registered model versions ({registry.name} registry)")
        return 0
    champion = registry.champion()
    rows = [
        {
            "version": f"{entry.version}{'*' if champion and entry.version == champion.version else ''}",
            "status": entry.status,
            "model_id": entry.model_id,
            "dataset_version": entry.dataset_version,
            "test_map50": f"{entry.metrics.get('test', {}).get('map50', float('nan')):.3f}",
            "test_map50_95": f"{entry.metrics.get('test', {}).get('map50_95', float('nan')):.3f}",
            "precision": entry.precision,
            # Labels spent since the parent and the test mAP50-95 they bought ("-": not recorded).
            "labels": str(entry.since_parent.get("labels_spent", "-")),
            "gain_map50_95": f"{entry.since_parent['test_gain']['map50_95']:+.3f}" if entry.since_parent else "-",
            "created_at": entry.created_at[:19],
            "reason": entry.status_reason[:60],
        }
        for entry in entries
    ]
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in COLUMNS}
    print("  ".join(c.ljust(widths[c]) for c in COLUMNS).rstrip())
    for row in rows:
        print("  ".join(row[c].ljust(widths[c]) for c in COLUMNS).rstrip())
    return 0


def _set_status(args: argparse.Namespace) -> int:
    registry = args.resources.model_registry.open(args.resources.store.open())
    try:
        entry = registry.set_status(args.version, args.status, args.reason or f"set by tagqa models {args.models_command}")
    except LookupError as exc:
        print(f"tagqa models {args.models_command}: {exc}")
        return 2
    print(f"model version {entry.version} ({entry.model_id}) is now {entry.status}")
    return 0
