"""``tagqa labels import`` and ``tagqa labels status``."""

from __future__ import annotations

import argparse
from pathlib import Path

from tagqa_assets.labeling.imports.rows import FORMATS
from tagqa_assets.labeling.jobs import JobBook
from tagqa_assets.labeling.imports.pipeline import UNMATCHED_PREFIX
from tagqa_assets.labeling.imports.sources import import_path, inbox_keys
from tagqa_assets.labeling.label_store import latest_records, snapshot_of
from tagqa_assets.labeling.unlabeled import find_unlabeled
from tagqa_assets.settings import defect_classes

SHOWN_REJECTS = 20


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``tagqa labels ...`` to the ``tagqa`` parser."""
    labels = subparsers.add_parser("labels", help="import label files, show the label store")
    commands = labels.add_subparsers(dest="labels_command", required=True)
    importer = commands.add_parser("import", help="import a label file (or a YOLO folder) into the label store")
    importer.add_argument("file", type=Path, help="labels.csv, Ground Truth manifest, label-record JSON lines, COCO JSON, Label Studio JSON/JSON-MIN export, or a YOLO folder")
    importer.add_argument("--format", choices=FORMATS, default=None, help="default: detected from the name and content")
    importer.add_argument("--images-root", type=Path, default=None, help="folder holding the labeled image files: match them by content hash")
    importer.add_argument("--strict", action="store_true", help="exit with status 1 when any row was rejected")
    importer.set_defaults(handler=_import)
    status = commands.add_parser("status", help="label store totals, open jobs, inbox, unlabeled images")
    status.set_defaults(handler=_status)


def _import(args: argparse.Namespace) -> int:
    store = args.resources.store.open()
    report = import_path(store, args.resources.labels.open(store), args.file, fmt=args.format, images_root=args.images_root)
    print(
        f"{args.file} ({report.format}): {report.rows} row(s): {report.imported} imported, "
        f"{report.already_in_store} already in the label store, {len(report.rejects)} rejected "
        f"({report.held_for_retry} held until their image arrives), {len(report.clipped)} box(es) clipped"
    )
    if report.matched_by:
        print("matched by " + ", ".join(f"{rule}: {count}" for rule, count in report.matched_by.items()))
    for reason, count in report.reasons().items():
        print(f"  {reason}: {count}")
    for reject in report.rejects[:SHOWN_REJECTS]:
        print(f"  line {reject.line}: {reject.reason}: {reject.source_ref} {reject.detail}")
    if len(report.rejects) > SHOWN_REJECTS:
        print(f"  ... {len(report.rejects) - SHOWN_REJECTS} more")
    print(f"report: {store.uri_for(f'labels/imports/{report.import_id}/report.json')}")
    return 1 if args.strict and report.rejects else 0


def _status(args: argparse.Namespace) -> int:
    store = args.resources.store.open()
    label_store = args.resources.labels.open(store)
    records = label_store.records()
    latest = latest_records(records)
    snapshot = snapshot_of(records, defect_classes())
    held = sum(1 for _ in store.list_objects(UNMATCHED_PREFIX))
    print(f"label store ({label_store.name}) in {store.uri}: {len(records)} record(s), {len(latest)} image(s) labeled")
    print(f"approved snapshot {snapshot.snapshot_id[:8]}: {snapshot.images} image(s), {snapshot.rejected} rejected")
    print(f"inbox: {len(inbox_keys(store))} file(s) waiting; held unmatched files: {held}")
    for job in JobBook(store).open_jobs():
        print(f"open job {job.job_id} ({job.backend}): {len(job.images)} image(s) {job.external_id}")
    print(f"unlabeled images (no label, no open job): {len(find_unlabeled(store, label_store))}")
    return 0
