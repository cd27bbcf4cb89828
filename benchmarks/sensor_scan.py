"""Cost of one raw-image sensor tick on a bucket with a long history.

Seeds an S3 bucket on moto's standalone server with N existing objects (spread over 100
days of one camera) plus M new ones, then measures one tick of tagqa's raw-image sensor
(`scan_new_raw_keys` with a cursor at the end of the history) against
`dagster_aws.s3.sensor.get_s3_keys` (lists the whole bucket every tick) on the same bucket.
List calls are counted with a botocore event hook on the client each one uses.

Last line: RESULT list_calls=N baseline_list_calls=N tick_s=S baseline_tick_s=S speedup=X
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import statistics
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import boto3

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tagqa_assets.ingestion.scan import RawCursor, scan_new_raw_keys  # noqa: E402
from tagqa_assets.storage import S3ObjectStore  # noqa: E402

BUCKET = "tagqa-sensor-bench"
PREFIX = "tagqa"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _keys(count: int, start: datetime, per_day: int) -> list[str]:
    keys = []
    for i in range(count):
        when = start + timedelta(days=i // per_day, seconds=(i % per_day) * 60)
        keys.append(f"raw/camera-1/{when:%Y/%m/%d}/{when:%H%M%S%f}-img-{i:06d}.jpg")
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


def _counting_client(endpoint: str) -> tuple[object, list[int]]:
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    calls = [0]

    def count(**_: object) -> None:
        calls[0] += 1

    client.meta.events.register("before-call.s3.ListObjectsV2", count)
    return client, calls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--existing", type=int, default=100_000)
    parser.add_argument("--new", type=int, default=100)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5, help="ticks of our sensor to time")
    parser.add_argument("--baseline-repeats", type=int, default=1, help="baseline listings to time (each lists the whole bucket)")
    args = parser.parse_args()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(name, "benchmark")  # moto accepts any credentials

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=BUCKET)
        history = _keys(args.existing, datetime(2026, 8, 17, tzinfo=timezone.utc), per_day=max(1, args.existing // 100))
        fresh = _keys(args.new, datetime(2026, 11, 25, 9, tzinfo=timezone.utc), per_day=args.new)
        started = time.perf_counter()
        print(f"seeding {len(history)} existing objects on moto ({args.threads} threads)...", flush=True)
        _seed(endpoint, history, args.threads)
        seed_s = time.perf_counter() - started
        print(f"seeded in {seed_s:.0f} s", flush=True)

        client, calls = _counting_client(endpoint)
        store = S3ObjectStore(f"s3://{BUCKET}/{PREFIX}", client=client)
        cursor = RawCursor({"raw/camera-1/": history[-1]})
        _seed(endpoint, fresh, args.threads)

        tick_times, tick_calls = [], []
        for _ in range(args.repeats):
            calls[0] = 0
            t0 = time.perf_counter()
            scan = scan_new_raw_keys(store, cursor)
            tick_times.append(time.perf_counter() - t0)
            tick_calls.append(calls[0])
            assert scan.new_keys == fresh, "the sensor must return exactly the new keys"

        from dagster_aws.s3.sensor import get_s3_keys

        base_times, base_calls = [], []
        for _ in range(args.baseline_repeats):
            calls[0] = 0
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                found = get_s3_keys(BUCKET, prefix=f"{PREFIX}/raw/", since_key=f"{PREFIX}/{history[-1]}", s3_session=client)
            base_times.append(time.perf_counter() - t0)
            base_calls.append(calls[0])
            assert len(found) == len(fresh), f"baseline returned {len(found)} keys"
    finally:
        server.stop()

    tick_s, base_s = statistics.median(tick_times), statistics.median(base_times)
    print(f"bucket: {args.existing} existing + {args.new} new objects (seeding took {seed_s:.0f} s)")
    print(f"tagqa raw_image_sensor tick: {tick_calls[0]} list calls, median {tick_s:.3f} s over {args.repeats} ticks ({', '.join(f'{t:.3f}' for t in tick_times)})")
    print(f"dagster_aws get_s3_keys:     {base_calls[0]} list calls, median {base_s:.3f} s over {args.baseline_repeats} run(s)")
    print(f"RESULT list_calls={tick_calls[0]} baseline_list_calls={base_calls[0]} tick_s={tick_s:.3f} baseline_tick_s={base_s:.3f} speedup={base_s / tick_s:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
