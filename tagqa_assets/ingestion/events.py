"""S3 event notifications for new raw images, delivered through an SQS queue.

S3 sends one message per created object (``s3:ObjectCreated:*`` filtered to
``<prefix>/raw/``, see deploy/aws/tagqa.yaml) to the queue; the raw-image sensor drains it
with long polling and batch receives (at most 10 messages per ``ReceiveMessage``, SQS's
limit). This module knows the message formats and the queue calls; the sensor decides what
to request and when a message may be deleted (only after the run that ingests its key has
been requested: see ``docs/ingestion.md``).

Every message ends in exactly one outcome of ``EVENT_OUTCOMES``, so counts add up:
``messages == sum(outcomes)`` per tick.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import unquote_plus, urlsplit

from tagqa_assets.contracts.keys import RAW_PREFIX

# What happened to a received event record; "new" ones become run requests.
NEW = "new"
NOT_S3_EVENT = "not_s3_event"  # not JSON, or JSON without S3 event records
TEST_EVENT = "test_event"  # s3:TestEvent, sent when the notification is configured
NOT_CREATED = "not_object_created"  # ObjectRemoved:*, ObjectRestore:* ...: nothing to ingest
OTHER_BUCKET = "other_bucket"  # an event for another bucket or outside the store prefix
OUTSIDE_RAW = "outside_raw"  # a key of the store that is not under raw/
DUPLICATE = "duplicate"  # the same key twice in one tick (S3 may send an event twice)
ALREADY_REQUESTED = "already_requested"  # a redelivered event whose key a run already covers

EVENT_OUTCOMES = (NEW, NOT_S3_EVENT, TEST_EVENT, NOT_CREATED, OTHER_BUCKET, OUTSIDE_RAW, DUPLICATE, ALREADY_REQUESTED)

SQS_MAX_BATCH = 10  # ReceiveMessage and DeleteMessageBatch both take at most 10


@dataclass(frozen=True)
class EventRecord:
    """One record of an S3 event message: the store key it names, or why it names none."""

    outcome: str
    key: str | None = None
    detail: str = ""
    event_time_s: float | None = None  # when S3 created the object (the record's eventTime)


@dataclass(frozen=True)
class ReceivedMessage:
    """An SQS message as the sensor needs it: receipt for the delete, body, delivery count."""

    receipt_handle: str
    body: str
    receive_count: int = 1
    first_received_s: float | None = None


@dataclass
class DeleteResult:
    """What deleting a list of receipt handles did."""

    calls: int = 0
    deleted: int = 0
    refused: int = 0  # entries SQS refused (an expired receipt handle): the message comes back
    retry: list[str] = field(default_factory=list)  # not attempted because a call failed outright
    error: str | None = None


@dataclass
class DrainResult:
    """What one drain of the queue returned; ``error`` is set when a call failed part way."""

    messages: list[ReceivedMessage] = field(default_factory=list)
    receive_calls: int = 0
    error: str | None = None


def parse_event_message(body: str, *, bucket: str, store_prefix: str) -> list[EventRecord]:
    """Classify every record of one message body against the store ``bucket``/``store_prefix``.

    Accepts S3's own notification JSON (``{"Records": [...]}``) and the same wrapped in an
    SNS notification (S3 -> SNS -> SQS fan-out). Guarantees at least one record per message,
    so a message that names nothing is still counted (``not_s3_event`` / ``test_event``).
    Object keys arrive URL-encoded (spaces as ``+``) and are decoded here.
    """
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, TypeError):
        return [EventRecord(NOT_S3_EVENT, detail=f"not JSON: {str(body)[:80]!r}")]
    if isinstance(data, dict) and data.get("Type") == "Notification" and isinstance(data.get("Message"), str):
        return parse_event_message(data["Message"], bucket=bucket, store_prefix=store_prefix)
    if isinstance(data, dict) and data.get("Event") == "s3:TestEvent":
        return [EventRecord(TEST_EVENT, detail=str(data.get("Bucket", "")))]
    records = data.get("Records") if isinstance(data, dict) else None
    if not isinstance(records, list) or not records:
        return [EventRecord(NOT_S3_EVENT, detail=f"no S3 event records: {body[:80]!r}")]
    return [_classify(record, bucket=bucket, store_prefix=store_prefix) for record in records]


def _classify(record: Any, *, bucket: str, store_prefix: str) -> EventRecord:
    try:
        name = record["eventName"]
        record_bucket = record["s3"]["bucket"]["name"]
        key = unquote_plus(record["s3"]["object"]["key"])
    except (KeyError, TypeError):
        return EventRecord(NOT_S3_EVENT, detail=f"record without eventName/s3.bucket/s3.object.key: {str(record)[:80]!r}")
    if record.get("eventSource") not in (None, "aws:s3"):
        return EventRecord(NOT_S3_EVENT, detail=f"eventSource {record.get('eventSource')!r}")
    if not str(name).startswith("ObjectCreated:"):
        return EventRecord(NOT_CREATED, detail=f"{name} {key}")
    if record_bucket != bucket or not key.startswith(store_prefix):
        return EventRecord(OTHER_BUCKET, detail=f"s3://{record_bucket}/{key}")
    store_key = key[len(store_prefix) :]
    if not store_key.startswith(RAW_PREFIX):
        return EventRecord(OUTSIDE_RAW, detail=store_key)
    return EventRecord(NEW, key=store_key, event_time_s=_event_time(record.get("eventTime")))


def _event_time(text: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class RawEventQueue:
    """The SQS queue S3 notifies; one boto3 client, built once."""

    def __init__(self, queue_url: str, *, region: str | None = None, client: Any = None) -> None:
        if not queue_url.startswith(("https://", "http://")):
            raise ValueError(f"raw event queue URL must be an http(s) SQS queue URL, got {queue_url!r}")
        self.queue_url = queue_url
        if client is None:
            import boto3
            from botocore.config import Config

            parts = urlsplit(queue_url)
            # Real SQS URLs select the endpoint from the region; any other host (moto,
            # LocalStack, a VPC endpoint) is the endpoint itself.
            endpoint = None if parts.hostname and parts.hostname.endswith("amazonaws.com") else f"{parts.scheme}://{parts.netloc}"
            config = Config(retries={"mode": "standard", "max_attempts": 2}, connect_timeout=5, read_timeout=30)
            client = boto3.client("sqs", endpoint_url=endpoint, region_name=region or None, config=config)
        self.client = client

    def drain(self, *, max_messages: int, wait_seconds: int, visibility_timeout_s: int) -> DrainResult:
        """Receive up to ``max_messages`` in batches of 10.

        The first receive long-polls ``wait_seconds`` (the tick waits for news); later ones
        do not wait, and the drain stops at the first batch under 10 messages (a drained
        queue costs one extra call; a short poll that samples too few servers only leaves
        messages for the next tick). A failing call ends the drain with ``error`` set and
        keeps what was received before it: those messages are handled, the rest stay in the
        queue and become visible again after ``visibility_timeout_s``.
        """
        result = DrainResult()
        wait = wait_seconds
        while len(result.messages) < max_messages:
            want = min(SQS_MAX_BATCH, max_messages - len(result.messages))
            try:
                result.receive_calls += 1
                page = self.client.receive_message(
                    QueueUrl=self.queue_url,
                    MaxNumberOfMessages=want,
                    WaitTimeSeconds=wait,
                    VisibilityTimeout=visibility_timeout_s,
                    MessageSystemAttributeNames=["ApproximateReceiveCount", "ApproximateFirstReceiveTimestamp"],
                )
            except Exception as exc:  # botocore's connection and client errors share no base
                result.error = f"receive_message on {self.queue_url} failed: {type(exc).__name__}: {exc}"
                return result
            batch = page.get("Messages", [])
            for message in batch:
                attributes = message.get("Attributes", {})
                first = attributes.get("ApproximateFirstReceiveTimestamp")
                result.messages.append(
                    ReceivedMessage(
                        receipt_handle=message["ReceiptHandle"],
                        body=message.get("Body", ""),
                        receive_count=int(attributes.get("ApproximateReceiveCount", 1)),
                        first_received_s=int(first) / 1000 if first else None,
                    )
                )
            if len(batch) < want:
                return result
            wait = 0
        return result

    def delete(self, receipt_handles: list[str]) -> DeleteResult:
        """Delete messages by receipt handle, 10 per call.

        Handles not deleted because a call failed outright (the queue unreachable) come back
        in ``retry`` for the next tick. Entries SQS itself refused (an expired receipt
        handle) are counted in ``refused`` and not retried: such a message becomes visible
        again and is then recognised as already requested.
        """
        result = DeleteResult()
        for start, chunk in _chunks(receipt_handles, SQS_MAX_BATCH):
            try:
                result.calls += 1
                answer = self.client.delete_message_batch(
                    QueueUrl=self.queue_url,
                    Entries=[{"Id": str(i), "ReceiptHandle": handle} for i, handle in enumerate(chunk)],
                )
            except Exception as exc:  # see drain()
                result.retry = receipt_handles[start:]
                result.error = f"delete_message_batch on {self.queue_url} failed: {type(exc).__name__}: {exc}"
                return result
            failed = answer.get("Failed", [])
            result.deleted += len(answer.get("Successful", []))
            result.refused += len(failed)
            if failed and result.error is None:
                result.error = f"delete_message_batch refused {len(failed)} entr(ies): {failed[0].get('Code')}: {failed[0].get('Message', '')}"
        return result


def _chunks(items: list[str], size: int) -> Iterator[tuple[int, list[str]]]:
    for start in range(0, len(items), size):
        yield start, items[start : start + size]
