"""raw_image_sensor: incremental per-source listing, persisted cursor, one run per batch."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from image_fixtures import encoded_image
from tagqa_assets.ingestion.assets import raw_images
from tagqa_assets.ingestion.catalog import RawImageCatalog
from tagqa_assets.ingestion.resources import RawEventQueueResource
from tagqa_assets.ingestion.scan import RawCursor, scan_new_raw_keys
from tagqa_assets.ingestion.sensors import raw_image_sensor
from tagqa_assets.storage import StoreResource


def _tick(resource: StoreResource, cursor: str | None, instance: dg.DagsterInstance | None = None):
    context = dg.build_sensor_context(cursor=cursor, resources={"store": resource, "raw_events": RawEventQueueResource()}, instance=instance)
    return raw_image_sensor(context)


def _write(resource: StoreResource, keys: list[str], first_shade: int = 0) -> None:
    store = resource.open()
    for index, key in enumerate(keys):
        store.put_bytes(key, encoded_image(shade=(first_shade + index) % 250))


def test_first_tick_then_only_new_keys(tmp_path: Path):
    resource = StoreResource(root=str(tmp_path / "store"))
    assert _tick(resource, None).skip_reason
    first = [f"raw/camera-1/2026/11/24/12000{i}-a.jpg" for i in range(3)]
    _write(resource, first)

    result = _tick(resource, None)
    assert isinstance(result, dg.SensorResult)
    [request] = result.run_requests
    assert request.run_config["ops"]["raw_images"]["config"]["keys"] == first
    assert request.run_key and request.run_key == _tick(resource, None).run_requests[0].run_key

    # The cursor is a plain string: a restarted daemon resumes from it.
    cursor = result.cursor
    assert _tick(resource, cursor).skip_reason
    later = ["raw/camera-1/2026/11/25/080000-b.jpg", "raw/edge-feedback/line-1/2026/11/25/20261125T080001000000Z-c.jpg"]
    _write(resource, later)
    second = _tick(resource, cursor)
    [request] = second.run_requests
    assert request.run_config["ops"]["raw_images"]["config"]["keys"] == later
    assert _tick(resource, second.cursor).skip_reason


def test_large_backlog_is_split_into_batches(tmp_path: Path):
    resource = StoreResource(root=str(tmp_path / "store"))
    store = resource.open()
    for i in range(1203):
        store.put_bytes(f"raw/camera-2/2026/11/25/{i:06d}.jpg", b"x")
    result = _tick(resource, None)
    sizes = [len(r.run_config["ops"]["raw_images"]["config"]["keys"]) for r in result.run_requests]
    assert sizes == [500, 500, 203]
    assert len({r.run_key for r in result.run_requests}) == 3


@pytest.mark.slow
def test_tick_cost_does_not_depend_on_history(s3_store):
    for i in range(2500):  # three pages of history in one source
        s3_store.put_bytes(f"raw/camera-1/2026/11/{20 + i // 1000:02d}/{i:06d}.jpg", b"x")
    cursor = scan_new_raw_keys(s3_store, RawCursor()).cursor
    for i in range(5):
        s3_store.put_bytes(f"raw/camera-1/2026/11/25/{900000 + i}.jpg", b"x")
    scan = scan_new_raw_keys(s3_store, cursor)
    assert len(scan.new_keys) == 5
    assert scan.list_calls == 2  # one delimiter listing for the sources, one StartAfter listing


def test_malformed_cursor_fails_loudly(tmp_path: Path):
    with pytest.raises(ValueError, match="cursor"):
        _tick(StoreResource(root=str(tmp_path / "s")), "garbage{")


def test_sensor_runs_ingest_each_image_exactly_once(tmp_path: Path):
    """End to end the way the daemon drives it: tick, launch each new run key once, persist the cursor."""
    resource = StoreResource(root=str(tmp_path / "store"))
    instance = dg.DagsterInstance.ephemeral()
    launched: set[str] = set()
    cursor_file = tmp_path / "cursor"

    def daemon_tick() -> int:
        cursor = cursor_file.read_text() if cursor_file.exists() else None
        result = _tick(resource, cursor, instance)
        if result.skip_reason:
            cursor_file.write_text(result.cursor)
            return 0
        runs = 0
        for request in result.run_requests:
            if request.run_key in launched:
                continue
            outcome = dg.materialize([raw_images], run_config=request.run_config, resources={"store": resource}, instance=instance, tags={"dagster/run_key": request.run_key})
            assert outcome.success
            launched.add(request.run_key)
            runs += 1
        cursor_file.write_text(result.cursor)
        return runs

    _write(resource, [f"raw/camera-1/2026/11/25/10000{i}.jpg" for i in range(4)])
    assert daemon_tick() == 1
    assert daemon_tick() == 0  # nothing new: no run
    _write(resource, ["raw/camera-1/2026/11/25/200000.jpg"], first_shade=100)
    assert daemon_tick() == 1
    assert len(RawImageCatalog(resource.open()).images()) == 5
    assert len(instance.get_runs()) == 2
