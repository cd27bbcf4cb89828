"""raw_image_sensor in event mode, on moto's S3 and SQS over HTTP.

The bucket gets the notification configuration of deploy/aws/tagqa.yaml (ObjectCreated
under <prefix>/raw/ into the queue); the daemon is emulated the way Dagster's works: it
submits a tick's run requests (skipping run keys that already have a run), and only then
stores the tick's cursor. Faults are real: a queue endpoint that answers garbage bytes,
a daemon that dies between submitting runs and storing the cursor.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import boto3
import dagster as dg
import pytest
from cfnlint.decode import decode

from conftest import REPO
from image_fixtures import encoded_image
from tagqa_assets.ingestion import events
from tagqa_assets.ingestion.assets import raw_images
from tagqa_assets.ingestion.catalog import RawImageCatalog
from tagqa_assets.ingestion.resources import RawEventQueueResource
from tagqa_assets.ingestion.scan import RawCursor
from tagqa_assets.ingestion.sensors import raw_image_sensor
from tagqa_assets.storage import StoreResource

PREFIX = "tagqa"


def template_notification(queue_arn: str) -> dict:
    """The bucket's notification configuration as deploy/aws/tagqa.yaml defines it, in S3 API form."""
    template, problems = decode(str(REPO / "deploy" / "aws" / "tagqa.yaml"))
    assert not problems
    configs = template["Resources"]["StoreBucket"]["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    return {
        "QueueConfigurations": [
            {
                "QueueArn": queue_arn,
                "Events": [config["Event"]],
                "Filter": {
                    "Key": {
                        "FilterRules": [
                            {"Name": rule["Name"], "Value": rule["Value"]["Fn::Sub"].replace("${StorePrefix}", PREFIX)}
                            for rule in config["Filter"]["S3Key"]["Rules"]
                        ]
                    }
                },
            }
            for config in configs
        ]
    }


@dataclass
class Site:
    """A bucket that notifies a queue, the resources pointing at them, and a Dagster instance."""

    endpoint: str
    bucket: str
    queue_url: str
    notification: dict
    store: StoreResource
    instance: dg.DagsterInstance
    cursor: str | None = None
    launched: list[dg.RunRequest] = field(default_factory=list)

    def events(self, **overrides) -> RawEventQueueResource:
        return RawEventQueueResource(**{"queue_url": self.queue_url, "aws_region": "us-east-1", "wait_seconds": 0, "fallback_every_ticks": 1000, **overrides})

    def tick(self, raw_events: RawEventQueueResource | None = None, *, submit: bool = True, store_cursor: bool = True) -> dg.SensorResult:
        """One daemon iteration: evaluate, submit the new run keys, then store the cursor."""
        with dg.build_sensor_context(
            cursor=self.cursor, resources={"store": self.store, "raw_events": raw_events or self.events()}, instance=self.instance
        ) as context:
            result = raw_image_sensor(context)
        if submit:
            for request in result.run_requests or []:
                if self.instance.get_runs(filters=dg.RunsFilter(tags={"dagster/run_key": request.run_key})):
                    continue
                outcome = dg.materialize(
                    [raw_images],
                    run_config=request.run_config,
                    resources={"store": self.store},
                    instance=self.instance,
                    tags={**request.tags, "dagster/run_key": request.run_key},
                )
                assert outcome.success
                self.launched.append(request)
        if store_cursor:
            self.cursor = result.cursor
        return result

    def counts(self) -> dict[str, int]:
        return RawCursor.parse(self.cursor).counts

    def queue_depth(self) -> int:
        sqs = boto3.client("sqs", endpoint_url=self.endpoint, region_name="us-east-1")
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        attributes = sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=names)["Attributes"]
        return sum(int(attributes[name]) for name in names)

    def send(self, body: str) -> None:
        boto3.client("sqs", endpoint_url=self.endpoint, region_name="us-east-1").send_message(QueueUrl=self.queue_url, MessageBody=body)

    def put_image(self, key: str, shade: int) -> None:
        self.store.open().put_bytes(key, encoded_image(shade=shade))

    def images(self) -> list[str]:
        return sorted(RawImageCatalog(self.store.open()).images()["key"])


@pytest.fixture
def site(moto_endpoint: str, s3_bucket: str) -> Iterator[Site]:
    sqs = boto3.client("sqs", endpoint_url=moto_endpoint, region_name="us-east-1")
    queue_url = sqs.create_queue(QueueName=f"{s3_bucket}-raw-events")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    notification = template_notification(queue_arn)
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1").put_bucket_notification_configuration(
        Bucket=s3_bucket, NotificationConfiguration=notification
    )
    sqs.purge_queue(QueueUrl=queue_url)  # drop the s3:TestEvent the configuration may send
    store = StoreResource(root=f"s3://{s3_bucket}/{PREFIX}", s3_endpoint_url=moto_endpoint, aws_region="us-east-1")
    with dg.DagsterInstance.ephemeral() as instance:
        yield Site(moto_endpoint, s3_bucket, queue_url, notification, store, instance)


@pytest.fixture
def garbage_endpoint() -> Iterator[str]:
    """A TCP server on 127.0.0.1 that answers every connection with garbage bytes and hangs up."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(65536)
                conn.sendall(b"\x16\x03garbage that is not HTTP\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(5)
    server.close()


def _requested_keys(result: dg.SensorResult) -> list[str]:
    return [key for request in result.run_requests or [] for key in request.run_config["ops"]["raw_images"]["config"]["keys"]]


def s3_event(bucket: str, key: str, name: str = "ObjectCreated:Put") -> str:
    return json.dumps(
        {
            "Records": [
                {
                    "eventVersion": "2.1",
                    "eventSource": "aws:s3",
                    "eventTime": "2026-11-25T09:00:00.000Z",
                    "eventName": name,
                    "s3": {"bucket": {"name": bucket}, "object": {"key": key, "size": 10}},
                }
            ]
        }
    )


def test_event_mode_ingests_each_new_image_once_and_empties_the_queue(site: Site):
    first = site.tick()  # the first tick in event mode also lists: nothing there yet
    assert first.skip_reason and "[events+listing]" in first.skip_reason.skip_message
    keys = [f"raw/camera-1/2026/11/25/09000{i}-a.jpg" for i in range(3)] + ["raw/edge-feedback/line-1/2026/11/25/090100-b.jpg"]
    for shade, key in enumerate(keys):
        site.put_image(key, shade * 40)
    assert site.queue_depth() == 4  # S3 notified the queue of each object

    result = site.tick()
    assert sorted(_requested_keys(result)) == sorted(keys)
    assert result.run_requests[0].tags["tagqa/discovery"] == "events"
    assert len(RawCursor.parse(result.cursor).pending) == 4
    assert site.queue_depth() == 4  # received, not deleted: the runs were only requested

    assert site.tick().skip_reason  # deletes what the previous tick handled
    assert site.queue_depth() == 0
    assert site.images() == sorted(keys)
    assert len(site.instance.get_runs()) == 1
    assert site.counts()["event_new"] == 4 and site.counts()["messages"] == 4


def test_writes_outside_raw_do_not_reach_the_queue(site: Site):
    store = site.store.open()
    store.put_json("catalog/other/x.json", {"a": 1})
    store.put_bytes("quarantine/raw/camera-1/x.jpg", b"x")
    assert site.queue_depth() == 0


def test_bad_and_duplicate_messages_are_counted_skipped_and_deleted(site: Site):
    site.tick()
    key = "raw/camera-1/2026/11/25/100000-real.jpg"
    site.put_image(key, 10)  # one real event
    site.send(s3_event(site.bucket, f"{PREFIX}/{key}"))  # the same event again (S3 may send one twice)
    site.send("not json at all")
    site.send(json.dumps({"hello": "world"}))
    site.send(json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": site.bucket}))
    site.send(s3_event(site.bucket, f"{PREFIX}/raw/camera-1/2026/11/25/gone.jpg", name="ObjectRemoved:Delete"))
    site.send(s3_event("someone-elses-bucket", f"{PREFIX}/raw/camera-1/2026/11/25/theirs.jpg"))
    site.send(s3_event(site.bucket, f"{PREFIX}/labels/l.json"))

    result = site.tick()
    assert _requested_keys(result) == [key]
    counts = site.counts()
    assert counts["messages"] == 8
    assert {name: counts.get(f"event_{name}", 0) for name in events.EVENT_OUTCOMES} == {
        events.NEW: 1,
        events.DUPLICATE: 1,
        events.NOT_S3_EVENT: 2,
        events.TEST_EVENT: 1,
        events.NOT_CREATED: 1,
        events.OTHER_BUCKET: 1,
        events.OUTSIDE_RAW: 1,
        events.ALREADY_REQUESTED: 0,
    }
    assert site.tick().skip_reason
    assert site.queue_depth() == 0
    assert site.images() == [key]


def test_event_for_an_object_deleted_before_ingestion_is_counted_missing(site: Site):
    site.tick()
    key = "raw/camera-1/2026/11/25/110000-short-lived.jpg"
    site.put_image(key, 20)
    site.store.open().delete(key)
    result = site.tick()
    assert _requested_keys(result) == [key]
    [run] = site.instance.get_runs()
    materialization = site.instance.get_latest_materialization_event(dg.AssetKey("raw_images")).asset_materialization
    assert materialization.metadata["missing"].value == 1 and materialization.metadata["files_seen"].value == 0
    [check] = [e for e in site.instance.all_logs(run.run_id) if e.dagster_event and e.dagster_event.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert check.dagster_event.event_specific_data.passed
    site.tick()
    assert site.queue_depth() == 0 and site.images() == []


def test_redelivered_message_never_launches_a_second_run(site: Site):
    short = site.events(visibility_timeout_s=1)
    site.tick(short)
    before_crash = site.cursor
    key = "raw/camera-1/2026/11/25/120000-a.jpg"
    site.put_image(key, 30)
    # The daemon submits the run, then dies before it stores the cursor: the message is
    # never deleted and comes back once its visibility timeout has passed.
    first = site.tick(short, store_cursor=False)
    assert _requested_keys(first) == [key]
    time.sleep(2.5)
    assert site.cursor == before_crash
    again = site.tick(short)
    assert again.skip_reason and not again.run_requests
    assert site.counts()["event_already_requested"] == 1
    site.tick(short)
    assert site.queue_depth() == 0
    assert len(site.instance.get_runs()) == 1 and site.images() == [key]

    # Dying before submitting: the redelivered message yields the same batch, hence the
    # same run key, and the daemon launches it once.
    second = "raw/camera-1/2026/11/25/130000-b.jpg"
    site.put_image(second, 60)
    lost = site.tick(short, submit=False, store_cursor=False)
    time.sleep(2.5)
    retried = site.tick(short)
    assert [r.run_key for r in retried.run_requests] == [r.run_key for r in lost.run_requests]
    site.tick(short)
    assert site.queue_depth() == 0
    assert len(site.instance.get_runs()) == 2 and site.images() == [key, second]


def test_unreachable_queue_falls_back_to_listing_and_loses_or_doubles_nothing(site: Site, garbage_endpoint: str):
    site.tick()
    a, b = "raw/camera-1/2026/11/25/140000-a.jpg", "raw/camera-1/2026/11/25/140001-b.jpg"
    site.put_image(a, 70)
    assert _requested_keys(site.tick()) == [a]  # A's message is now pending deletion
    site.put_image(b, 110)  # B's event waits in the queue

    broken = site.events(queue_url=f"{garbage_endpoint}/123456789012/{site.bucket}-raw-events")
    outage = site.tick(broken)  # the sensor keeps ticking: the listing finds B
    assert _requested_keys(outage) == [b]
    assert outage.run_requests[0].tags["tagqa/discovery"] == "events+listing"
    cursor = RawCursor.parse(site.cursor)
    assert len(cursor.pending) == 1  # A's receipt, kept for when the queue is back
    assert site.counts()["queue_errors"] == 1

    back = site.tick()  # deletes A's message; B's event names a key the listing already requested
    assert back.skip_reason and site.counts()["event_already_requested"] == 1
    site.tick()
    assert site.queue_depth() == 0
    assert site.images() == [a, b]
    assert len(site.instance.get_runs()) == 2


def test_fallback_listing_finds_keys_written_without_an_event(site: Site):
    raw_events = site.events(fallback_every_ticks=3)
    site.tick(raw_events)  # lists (first tick), listed_at starts the clock
    s3 = boto3.client("s3", endpoint_url=site.endpoint, region_name="us-east-1")
    s3.put_bucket_notification_configuration(Bucket=site.bucket, NotificationConfiguration={})
    quiet = ["raw/camera-2/2026/11/25/150000-c.jpg", "raw/edge-feedback/line-9/2026/11/25/150001-d.jpg"]
    for shade, key in enumerate(quiet):
        site.put_image(key, 120 + shade * 20)
    s3.put_bucket_notification_configuration(Bucket=site.bucket, NotificationConfiguration=site.notification)
    loud = "raw/camera-1/2026/11/25/150002-e.jpg"
    site.put_image(loud, 200)

    assert _requested_keys(site.tick(raw_events)) == [loud]  # tick 1 after the listing: events only
    assert site.tick(raw_events).skip_reason  # tick 2
    fallback = site.tick(raw_events)  # tick 3: the listing runs and finds only what had no event
    assert sorted(_requested_keys(fallback)) == sorted(quiet)
    assert site.counts()["listing_found"] == 2
    assert site.images() == sorted(quiet + [loud])
    assert len(site.instance.get_runs()) == 2


def test_event_keys_are_url_decoded_and_sns_envelopes_unwrapped():
    body = s3_event("b", "tagqa/raw/camera-1/2026/11/25/a+b%C3%A9.jpg")
    [record] = events.parse_event_message(body, bucket="b", store_prefix="tagqa/")
    assert record.outcome == events.NEW and record.key == "raw/camera-1/2026/11/25/a bé.jpg"
    wrapped = json.dumps({"Type": "Notification", "Message": body})
    assert events.parse_event_message(wrapped, bucket="b", store_prefix="tagqa/") == [record]
    [bad] = events.parse_event_message(json.dumps({"Records": [{"eventName": "ObjectCreated:Put"}]}), bucket="b", store_prefix="tagqa/")
    assert bad.outcome == events.NOT_S3_EVENT


def test_a_queue_needs_an_s3_store(tmp_path):
    with dg.build_sensor_context(
        resources={"store": StoreResource(root=str(tmp_path)), "raw_events": RawEventQueueResource(queue_url="http://127.0.0.1:1/1/q")}
    ) as context, pytest.raises(ValueError, match="needs an S3 store"):
        raw_image_sensor(context)
