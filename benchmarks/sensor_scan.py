"""Cost of one raw-image sensor tick at fleet scale: events vs per-source listing vs full listing.

On moto's standalone server (S3 + SQS over HTTP): a bucket with ``--existing`` objects
spread over ``--cameras`` camera sources and ``--sources`` edge-device sources
(``raw/edge-feedback/<device>/``), written before the bucket notifies the queue; then the
S3 event notification (ObjectCreated under ``<prefix>/raw/``) is applied and ``--new``
objects are written, spread over ``--new-sources`` of those sources. One tick is measured
three ways on the same bucket, counting S3/SQS calls with botocore event hooks:

(a) ``dagster_aws.s3.sensor.get_s3_keys`` (lists the whole bucket),
(b) tagqa's per-source ``StartAfter`` listing (listing mode, cursor at the end of history),
(c) tagqa's event-driven tick (event mode: drain the queue).

Then ``--unnotified`` keys are written with the notification removed (as a writer that
bypasses events would) and the fallback listing tick must find every one of them. Before
all this, the local-folder backend's listing tick is timed with the same source layout.

moto's SQS checks every queued message's visibility on every request through a datetime
round trip (~25 us per message per call, so a request costs O(queue length): about 4 s per
ReceiveMessage with 2,000 messages queued on a busy 2-core machine, and 1 s per
SendMessageBatch). Real SQS has no such cost. ``--moto-sqs-clock fast`` (the default)
replaces that helper in moto's SQS module by ``time.time()``: moto still scans the queue on
every request, only the constant shrinks; the run samples a few receives with moto's own
clock first and prints them. Nothing in tagqa or boto3 is patched.

Last line: RESULT event_calls=N per_source_calls=N event_tick_s=S per_source_tick_s=S
event_speedup=X fallback_found=N/N
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import statistics
import sys
import tempfile
import time
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import boto3

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tagqa_assets.ingestion.discovery import EventOptions, discover_raw_keys  # noqa: E402
from tagqa_assets.ingestion.events import RawEventQueue  # noqa: E402
from tagqa_assets.ingestion.scan import RawCursor, scan_new_raw_keys  # noqa: E402
from tagqa_assets.storage import LocalObjectStore, S3ObjectStore  # noqa: E402

BUCKET = "tagqa-sensor-bench"
PREFIX = "tagqa"
QUEUE = "tagqa-raw-events"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def source_names(cameras: int, devices: int) -> list[str]:
    """Source prefixes: ``raw/camera-NN/`` and ``raw/edge-feedback/device-NNNN/``."""
    return [f"raw/camera-{i:02d}/" for i in range(1, cameras + 1)] + [
        f"raw/edge-feedback/device-{i:04d}/" for i in range(1, devices + 1)
    ]


def spread_keys(sources: list[str], count: int, start: datetime, tag: str) -> list[str]:
    """``count`` keys round-robin over ``sources``, in time order within each source."""
    keys = []
    for i in range(count):
        when = start + timedelta(minutes=i // len(sources))
        keys.append(f"{sources[i % len(sources)]}{when:%Y/%m/%d}/{when:%H%M%S%f}-{tag}-{i:06d}.jpg")
    return keys


def _seed(endpoint: str, keys: list[str], threads: int) -> None:
    clients = [boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1") for _ in range(threads)]

    def put(index_key: tuple[int, str]) -> None:
        index, key = index_key
        clients[index % threads].put_object(Bucket=BUCKET, Key=f"{PREFIX}/{key}", Body=b"jpeg")

    with ThreadPoolExecutor(threads) as pool:
        for done, _ in enumerate(pool.map(put, enumerate(keys)), 1):
            if done % 10_000 == 0:
                print(f"  seeded {done}/{len(keys)}", flush=True)


def _counting(client: object, service: str) -> Counter[str]:
    calls: Counter[str] = Counter()

    def count(model: object, **_: object) -> None:
        calls[model.name] += 1  # type: ignore[attr-defined]

    client.meta.events.register(f"before-call.{service}", count)  # type: ignore[attr-defined]
    return calls


def _end_cursor(keys: list[str]) -> dict[str, str]:
    """The listing cursor a sensor has after handing out ``keys``: last key per source."""
    after: dict[str, str] = {}
    for key in sorted(keys):
        parts = key.split("/")
        source = "/".join(parts[:3 if parts[1] == "edge-feedback" else 2]) + "/"
        after[source] = key
    return after


def local_tick(sources: list[str], per_source: int, new_sources: int, new: int) -> tuple[int, float, float]:
    """(list calls, median tick s with nothing new, tick s with ``new`` keys) on a local store."""
    with tempfile.TemporaryDirectory() as root:
        store = LocalObjectStore(root)
        history = spread_keys(sources, per_source * len(sources), datetime(2026, 8, 17, tzinfo=timezone.utc), "old")
        for key in history:
            path = store.root / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"jpeg")
        cursor = RawCursor(after=_end_cursor(history))
        idle = []
        for _ in range(5):
            t0 = time.perf_counter()
            scan = scan_new_raw_keys(store, cursor)
            idle.append(time.perf_counter() - t0)
            assert not scan.new_keys
        fresh = spread_keys(sources[:new_sources], new, datetime(2026, 11, 25, 9, tzinfo=timezone.utc), "new")
        for key in fresh:
            store.put_bytes(key, b"jpeg")
        t0 = time.perf_counter()
        scan = scan_new_raw_keys(store, cursor)
        busy = time.perf_counter() - t0
        assert sorted(scan.new_keys) == sorted(fresh), "local listing must return exactly the new keys"
        return scan.list_calls, statistics.median(idle), busy


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--existing", type=int, default=100_000)
    parser.add_argument("--cameras", type=int, default=20)
    parser.add_argument("--sources", type=int, default=1000, help="edge-device sources (raw/edge-feedback/<device>/)")
    parser.add_argument("--new", type=int, default=2000)
    parser.add_argument("--new-sources", type=int, default=200)
    parser.add_argument("--unnotified", type=int, default=50, help="keys written without an event, for the fallback")
    parser.add_argument("--local-per-source", type=int, default=20, help="objects per source in the local-folder run")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--skip-baseline", action="store_true", help="skip (a), which lists the whole bucket")
    parser.add_argument("--local-only", action="store_true", help="only the local-folder tick (no moto)")
    parser.add_argument(
        "--moto-sqs-clock",
        choices=["fast", "as-is"],
        default="fast",
        help="fast: replace moto's SQS clock helper by time.time() (see the module docstring)",
    )
    args = parser.parse_args()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(name, "benchmark")  # moto accepts any credentials

    sources = source_names(args.cameras, args.sources)
    _, cameras_idle_s, _ = local_tick(sources[: args.cameras], args.local_per_source, min(args.new_sources, args.cameras), args.new)
    print(f"local folder, {args.cameras} camera sources only (reference): listing tick {cameras_idle_s:.3f} s with nothing new", flush=True)
    local_calls, local_idle_s, local_busy_s = local_tick(sources, args.local_per_source, args.new_sources, args.new)
    print(
        f"local folder, {len(sources)} sources x {args.local_per_source} objects: listing tick {local_calls} list calls, "
        f"{local_idle_s:.3f} s with nothing new (median of 5), {local_busy_s:.3f} s with {args.new} new",
        flush=True,
    )
    if args.local_only:
        print(f"RESULT_LOCAL sources={len(sources)} list_calls={local_calls} idle_tick_s={local_idle_s:.3f} tick_with_new_s={local_busy_s:.3f} cameras_only_idle_tick_s={cameras_idle_s:.3f}")
        return 0

    from moto.server import ThreadedMotoServer

    import moto.sqs.models as moto_sqs

    moto_clock, moto_time = moto_sqs.unix_time_millis, moto_sqs.unix_time
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        queue_url = sqs.create_queue(QueueName=QUEUE, Attributes={"VisibilityTimeout": "300"})["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        notification = {
            "QueueConfigurations": [
                {
                    "QueueArn": queue_arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": f"{PREFIX}/raw/"}]}},
                }
            ]
        }
        history = spread_keys(sources, args.existing, datetime(2026, 8, 17, tzinfo=timezone.utc), "old")
        fresh = spread_keys(sources[: args.new_sources], args.new, datetime(2026, 11, 25, 9, tzinfo=timezone.utc), "new")
        # Written while the bucket does not notify (as a writer that bypasses events would).
        hidden = spread_keys(sources[-10:], args.unnotified, datetime(2026, 11, 26, 9, tzinfo=timezone.utc), "quiet")
        started = time.perf_counter()
        print(f"seeding {len(history)} existing objects over {len(sources)} sources on moto ({args.threads} threads)...", flush=True)
        _seed(endpoint, history + hidden, args.threads)
        seed_s = time.perf_counter() - started
        print(f"seeded in {seed_s:.0f} s; notifying {queue_arn}, writing {len(fresh)} new objects", flush=True)
        if args.moto_sqs_clock == "fast":  # otherwise every SendMessage/ReceiveMessage scans the queue slowly
            moto_sqs.unix_time_millis, moto_sqs.unix_time = (lambda: time.time() * 1000.0), time.time
        s3.put_bucket_notification_configuration(Bucket=BUCKET, NotificationConfiguration=notification)
        sqs.purge_queue(QueueUrl=queue_url)  # the one-off s3:TestEvent of the configuration
        last_listing = time.time() - 600  # the sensor's fallback listing ran before these were written
        _seed(endpoint, fresh, args.threads)
        queued = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
        print(f"queue holds {queued['ApproximateNumberOfMessages']} messages", flush=True)

        from botocore.config import Config

        patient = Config(read_timeout=900, retries={"max_attempts": 1})  # a timed-out receive would hide its messages
        s3_client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", config=patient)
        s3_calls = _counting(s3_client, "s3")
        store = S3ObjectStore(f"s3://{BUCKET}/{PREFIX}", client=s3_client)
        sqs_client = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1", config=patient)
        sqs_calls = _counting(sqs_client, "sqs")
        queue = RawEventQueue(queue_url, client=sqs_client)
        end_of_history = RawCursor(after=_end_cursor(history))

        # (c) event mode: the fallback listing ran before the new objects came, nothing pending.
        options = EventOptions(fallback_every_ticks=120, wait_seconds=1)
        event_cursor = RawCursor(after=end_of_history.after, listed_at=last_listing, ticks_since_listing=1)
        t0 = time.perf_counter()
        event = discover_raw_keys(store, event_cursor, queue=queue, options=options, requested_since=lambda _: set(), now=time.time())
        event_s = time.perf_counter() - t0
        event_calls = sum(sqs_calls.values()) + sum(s3_calls.values())
        assert not event.errors, event.errors
        first_tick_found = len(set(event.new_keys) & set(fresh))
        sqs_calls.clear()
        found_keys, cursor, extra_ticks = set(event.new_keys), event.cursor, 0
        t0 = time.perf_counter()
        while True:  # the next tick deletes what the first handled (and takes any message it left)
            follow = discover_raw_keys(store, cursor, queue=queue, options=options, requested_since=lambda _: found_keys, now=time.time())
            found_keys |= set(follow.new_keys)
            cursor = follow.cursor
            if not follow.new_keys and not cursor.pending or extra_ticks == 3:
                break
            extra_ticks += 1
        follow_s = time.perf_counter() - t0
        delete_calls, idle_receive_calls = sqs_calls["DeleteMessageBatch"], sqs_calls["ReceiveMessage"]
        print(
            f"(c) event tick: {event_calls} calls ({event.receive_calls} ReceiveMessage), {event_s:.3f} s, found {first_tick_found}/{len(fresh)} new keys; "
            f"following tick(s) ({extra_ticks + 1}): {delete_calls} DeleteMessageBatch + {idle_receive_calls} ReceiveMessage, {follow_s:.3f} s, "
            f"all found: {len(found_keys & set(fresh))}/{len(fresh)}, queue empty: {not cursor.pending}",
            flush=True,
        )

        # (b) the per-source listing, as the event mode's fallback tick runs it: one delimiter
        # listing of raw/ and of raw/edge-feedback/, one StartAfter listing per source (plus
        # one empty ReceiveMessage). It must find the keys written without an event.
        s3_calls.clear()
        sqs_calls.clear()
        due = RawCursor(after=end_of_history.after, listed_at=last_listing, ticks_since_listing=options.fallback_every_ticks)
        t0 = time.perf_counter()
        fallback = discover_raw_keys(store, due, queue=queue, options=options, requested_since=lambda _: found_keys, now=time.time())
        per_source_s = time.perf_counter() - t0
        per_source_calls = sum(s3_calls.values())
        fallback_found = len(set(fallback.new_keys) & set(hidden))
        print(
            f"(b) per-source listing (fallback tick): {per_source_calls} list calls + {sum(sqs_calls.values())} ReceiveMessage, {per_source_s:.3f} s; "
            f"found {fallback_found}/{len(hidden)} keys written without an event, {len(set(fallback.new_keys) - set(hidden))} others",
            flush=True,
        )
    except BaseException:
        server.stop()
        raise

    speedup = per_source_s / event_s
    print(f"bucket: {args.existing} existing objects over {len(sources)} sources + {args.new} new over {args.new_sources} (seeding took {seed_s:.0f} s)")
    print(f"target: event calls <= 2 + new/10 = {2 + args.new // 10}; event tick >= 20x faster than the per-source listing")
    print(f"RESULT_LOCAL sources={len(sources)} list_calls={local_calls} idle_tick_s={local_idle_s:.3f} tick_with_new_s={local_busy_s:.3f} cameras_only_idle_tick_s={cameras_idle_s:.3f}")
    print(
        f"RESULT event_calls={event_calls} per_source_calls={per_source_calls} event_tick_s={event_s:.3f} "
        f"per_source_tick_s={per_source_s:.3f} event_speedup={speedup:.1f} fallback_found={fallback_found}/{len(hidden)}",
        flush=True,
    )
    try:
        if not args.skip_baseline:  # (a) dagster-aws: one listing of the whole raw/ prefix, after the RESULT line (slow)
            from dagster_aws.s3.sensor import get_s3_keys

            s3_calls.clear()
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                found = get_s3_keys(BUCKET, prefix=f"{PREFIX}/raw/", s3_session=s3_client)
            base_s, base_calls = time.perf_counter() - t0, sum(s3_calls.values())
            print(f"(a) dagster_aws get_s3_keys: {base_calls} list calls, {base_s:.3f} s, {len(found)} keys (the whole prefix)")
            print(f"RESULT_BASELINE get_s3_keys_calls={base_calls} get_s3_keys_s={base_s:.3f}")
    finally:
        moto_sqs.unix_time_millis, moto_sqs.unix_time = moto_clock, moto_time
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
