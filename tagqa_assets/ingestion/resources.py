"""Resources of the ingestion stage: the S3 event queue the raw-image sensor drains."""

from __future__ import annotations

import dagster as dg

from tagqa_assets.ingestion.discovery import EventOptions
from tagqa_assets.ingestion.events import RawEventQueue


class RawEventQueueResource(dg.ConfigurableResource):
    """Where the raw-image sensor learns about new raw images (docs/ingestion.md).

    ``queue_url`` empty (the default): listing mode, every tick lists each source. Set
    (``TAGQA_RAW_EVENT_QUEUE_URL``, the ``RawEventQueueUrl`` stack output): event mode, the
    queue S3 notifies for every object created under ``<prefix>/raw/``, with the listing
    every ``fallback_every_ticks`` ticks (``TAGQA_RAW_FALLBACK_EVERY_TICKS``) as fallback.
    """

    queue_url: str = ""
    aws_region: str = ""
    fallback_every_ticks: int = 120
    wait_seconds: int = 10
    visibility_timeout_s: int = 300
    max_messages_per_tick: int = 2000

    def open(self) -> RawEventQueue | None:
        """The queue client, or ``None`` in listing mode."""
        if not self.queue_url:
            return None
        return RawEventQueue(self.queue_url, region=self.aws_region or None)

    def options(self) -> EventOptions:
        """The drain options; raises ``ValueError`` naming the setting when one is out of range."""
        if self.fallback_every_ticks < 1:
            raise ValueError(f"TAGQA_RAW_FALLBACK_EVERY_TICKS must be at least 1, got {self.fallback_every_ticks}")
        if not 0 <= self.wait_seconds <= 20:
            raise ValueError(f"wait_seconds must be 0..20 (SQS long polling), got {self.wait_seconds}")
        return EventOptions(
            fallback_every_ticks=self.fallback_every_ticks,
            wait_seconds=self.wait_seconds,
            visibility_timeout_s=self.visibility_timeout_s,
            max_messages=self.max_messages_per_tick,
        )
