"""``tagqa results collect``: the results collector as a long-running command."""

from __future__ import annotations

import argparse
import os

from tagqa_assets.monitoring.collector import RESULTS_TOPIC, CollectorSettings, run_collector
from tagqa_assets.settings import store_from_environment

DEFAULTS = CollectorSettings()


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``tagqa results ...`` to the ``tagqa`` parser."""
    results = subparsers.add_parser("results", help="line results from the devices")
    commands = results.add_subparsers(dest="results_command", required=True)
    collect = commands.add_parser(
        "collect", help="subscribe to tagqa/+/detections and write the results into the store (runs until stopped)")
    collect.add_argument("--broker", help="HOST:PORT (default TAGQA_MQTT_BROKER or 127.0.0.1:1883)")
    collect.add_argument("--client-id", help=f"MQTT client id, fixed so the session survives restarts "
                                             f"(default TAGQA_RESULTS_CLIENT_ID or {DEFAULTS.client_id})")
    collect.add_argument("--topic", default=RESULTS_TOPIC, help=f"topic filter (default {RESULTS_TOPIC})")
    collect.add_argument("--batch-rows", type=int,
                         help=f"a part per this many results (default TAGQA_RESULTS_BATCH_ROWS or {DEFAULTS.batch_rows})")
    collect.add_argument("--batch-seconds", type=float,
                         help=f"... or this many seconds (default TAGQA_RESULTS_BATCH_SECONDS or {DEFAULTS.batch_seconds})")
    collect.set_defaults(handler=_collect)


def settings_from(args: argparse.Namespace) -> CollectorSettings:
    """Command-line values over the environment's over the defaults in ``CollectorSettings``."""
    env = os.environ
    return CollectorSettings(
        broker=args.broker or env.get("TAGQA_MQTT_BROKER") or DEFAULTS.broker,
        client_id=args.client_id or env.get("TAGQA_RESULTS_CLIENT_ID") or DEFAULTS.client_id,
        topic=args.topic,
        batch_rows=args.batch_rows or int(env.get("TAGQA_RESULTS_BATCH_ROWS") or DEFAULTS.batch_rows),
        batch_seconds=args.batch_seconds or float(env.get("TAGQA_RESULTS_BATCH_SECONDS") or DEFAULTS.batch_seconds),
    )


def _collect(args: argparse.Namespace) -> int:
    stats = run_collector(store_from_environment(), settings_from(args))
    print(f"collected: {stats.as_dict()}")
    return 0
