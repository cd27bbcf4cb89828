"""``tagqa demo`` and ``tagqa upload``."""

from __future__ import annotations

import argparse
from pathlib import Path

from tagqa_assets.contracts.keys import RAW_PREFIX
from tagqa_assets.ingestion.writers import DEMO_IMAGES, upload_folder, write_demo_set
from tagqa_assets.contracts.labels import parse_class_names
from tagqa_assets.settings import defect_classes


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ingestion commands to the ``tagqa`` parser."""
    demo = subparsers.add_parser("demo", help="write synthetic tag images (and their labels) into the store")
    demo.add_argument("--count", type=int, default=DEMO_IMAGES, help=f"number of images (default {DEMO_IMAGES}: what the demo profile learns from)")
    demo.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same images")
    demo.add_argument("--source", default="camera-demo", help="raw source name (default camera-demo)")
    demo.add_argument("--no-labels", action="store_true", help="do not drop ground-truth labels into the inbox")
    demo.add_argument("--if-empty", action="store_true", help="do nothing when raw/ already holds objects")
    demo.add_argument("--defects", default=None, help="defect kinds to draw, comma-separated (default: TAGQA_DEFECT_CLASSES; scratch and dent can be drawn)")
    demo.set_defaults(handler=_demo)

    upload = subparsers.add_parser("upload", help="send a folder of images into raw/<source>/<date>/")
    upload.add_argument("folder", type=Path)
    upload.add_argument("--source", default="import", help="raw source name (default import)")
    upload.set_defaults(handler=_upload)


def _demo(args: argparse.Namespace) -> int:
    store = args.resources.store.open()
    if args.if_empty and next(iter(store.list_objects(RAW_PREFIX)), None) is not None:
        print(f"{store.uri}: raw/ is not empty, demo set not written")
        return 0
    defects = parse_class_names(args.defects, source="--defects") if args.defects else defect_classes()
    taxonomy = defect_classes()
    if not args.no_labels and tuple(defects) != tuple(taxonomy[: len(defects)]):
        print(f"--defects {list(defects)} must be the first classes of the taxonomy {list(taxonomy)} (TAGQA_DEFECT_CLASSES), or the labels would be rejected")
        return 2
    try:
        keys, inbox = write_demo_set(store, args.count, seed=args.seed, source=args.source, with_labels=not args.no_labels, defects=defects)
    except ValueError as exc:
        print(f"tagqa demo: {exc}; set --defects or TAGQA_DEFECT_CLASSES to kinds it can draw")
        return 2
    print(f"wrote {len(keys)} synthetic images with {', '.join(defects)} to {store.uri_for(RAW_PREFIX + args.source)}")
    if inbox:
        print(f"wrote their labels to {store.uri_for(inbox)}")
    return 0


def _upload(args: argparse.Namespace) -> int:
    store = args.resources.store.open()
    result = upload_folder(store, args.folder, source=args.source)
    print(f"uploaded {len(result.keys)} file(s) from {args.folder} to {store.uri_for(RAW_PREFIX + args.source)}")
    for path, reason in result.refused:
        print(f"refused {path}: {reason}")
    return 0
