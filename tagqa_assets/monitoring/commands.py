"""``tagqa results collect``: the results collector as a long-running command."""

from __future__ import annotations

import argparse

from tagqa_assets.monitoring.collector import RESULTS_TOPIC, CollectorSettings, run_collector

def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``tagqa results ...`` to the ``tagqa`` parser."""
    results = subparsers.add_parser("results", help="line results from the devices")
    commands = results.add_subparsers(dest="results_command", required=True)
    collect = commands.add_parser(
        "collect", help="subscribe to tagqa/+/detections and write the results into the store (runs until stopped)")
    collect.add_argument("--broker", help="HOST:PORT (default: the TAGQA_MQTT_BROKER setting)")
    collect.add_argument("--client-id", help="MQTT client id, fixed so the session survives restarts "
                                             "(default: the TAGQA_RESULTS_CLIENT_ID setting)")
    collect.add_argument("--topic", default=RESULTS_TOPIC, help=f"topic filter (default {RESULTS_TOPIC})")
    collect.add_argument("--batch-rows", type=int,
                         help="a part per this many results (default: the TAGQA_RESULTS_BATCH_ROWS setting)")
    collect.add_argument("--batch-seconds", type=float,
                         help="... or this many seconds (default: the TAGQA_RESULTS_BATCH_SECONDS setting)")
    collect.set_defaults(handler=_collect)


def settings_from(args: argparse.Namespace) -> CollectorSettings:
    """Command-line values over the settings in force (shell, then tagqa.env, then defaults)."""
    settings = args.settings
    return CollectorSettings(
        broker=args.broker or settings.mqtt_broker,
        client_id=args.client_id or settings.results_client_id,
        topic=args.topic,
        batch_rows=args.batch_rows or settings.results_batch_rows,
        batch_seconds=args.batch_seconds or settings.results_batch_seconds,
    )


def _collect(args: argparse.Namespace) -> int:
    stats = run_collector(args.resources.store.open(), settings_from(args))
    print(f"collected: {stats.as_dict()}")
    return 0
