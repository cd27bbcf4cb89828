"""``tagqa demo`` and ``tagqa upload``."""

from __future__ import annotations

import argparse
from pathlib import Path

from tagqa_assets.contracts.keys import RAW_PREFIX
from tagqa_assets.ingestion.writers import upload_folder, write_demo_set


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ingestion commands to the ``tagqa`` parser."""
    demo = subparsers.add_parser("demo", help="write synthetic tag images (and their labels) into the store")
    demo.add_argument("--count", type=int, default=40, help="number of images (default 40)")
    demo.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same images")
    demo.add_argument("--source", default="camera-demo", help="raw source name (default camera-demo)")
    demo.add_argument("--no-labels", action="store_true", help="do not drop ground-truth labels into the inbox")
    demo.add_argument("--if-empty", action="store_true", help="do nothing when raw/ already holds objects")
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
    keys, inbox = write_demo_set(store, args.count, seed=args.seed, source=args.source, with_labels=not args.no_labels)
    print(f"wrote {len(keys)} synthetic images to {store.uri_for(RAW_PREFIX + args.source)}")
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
