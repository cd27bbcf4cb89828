"""Capture uploads: local folder, S3 signed by awscrt (checked by a signature-verifying S3 endpoint),
Greengrass-style container credentials, and the uploader's retry with backoff."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import boto3
import pytest

from edge_fixtures import free_port
from edge_runtime.capture import RingEntry
from edge_runtime.capture_queue import PRIORITY_AUTOMATIC, CaptureQueue
from edge_runtime.feedback import build_sidecar
from edge_runtime.stores import LocalFolderStore, S3Store, StoreError, open_store
from edge_runtime.uploader import CaptureUploader
from polling import wait_until

JPEG = b"\xff\xd8\xff" + b"scratch" * 100


def test_local_store_writes_atomically_and_refuses_escaping_keys(tmp_path: Path) -> None:
    store = LocalFolderStore(tmp_path / "store")
    store.put("raw/edge-feedback/line-1/2026/11/25/a.jpg", JPEG, "image/jpeg")
    assert (tmp_path / "store/raw/edge-feedback/line-1/2026/11/25/a.jpg").read_bytes() == JPEG
    assert not list((tmp_path / "store").rglob(".*uploading"))
    with pytest.raises(StoreError, match="escapes"):
        store.put("../outside.jpg", JPEG, "image/jpeg")


@pytest.mark.parametrize("uri, kind", [
    ("", type(None)),  # no upload target: captures stay queued
    ("/var/lib/tagqa/store", LocalFolderStore),  # local folder
    ("s3://bucket/prefix", S3Store),  # S3
])
def test_open_store(uri: str, kind: type) -> None:
    assert isinstance(open_store(uri), kind)


def test_open_store_rejects_other_schemes() -> None:
    with pytest.raises(ValueError, match="only s3://"):
        open_store("gs://bucket/x")


@pytest.fixture(scope="module")
def signing_s3() -> Iterator[tuple[str, dict]]:
    """moto's S3 in its own process with request authentication ON: a bad SigV4 signature gets 403.

    The first three calls are allowed unauthenticated, to create the IAM user, its policy and key.
    """
    port = free_port()
    code = (f"from moto.server import ThreadedMotoServer as S; import time; "
            f"S(ip_address='127.0.0.1', port={port}, verbose=False).start(); time.sleep(3600)")
    process = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        def answers() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"moto server for {endpoint} exited with {process.returncode} before answering: "
                                   f"{process.stderr.read().decode(errors='replace')[-2000:]}")
            urllib.request.urlopen(endpoint + "/moto-api/", timeout=2)
            return True
        # generous: moto imports for seconds, longer on a busy machine
        wait_until(answers, f"moto's S3 at {endpoint}/moto-api/ to answer", 120, poll=0.1, error=RuntimeError,
                   retry_on=(OSError,))
        iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1")
        iam.create_user(UserName="edge-device")
        iam.put_user_policy(UserName="edge-device", PolicyName="s3", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
        key = iam.create_access_key(UserName="edge-device")["AccessKey"]
        creds = {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **creds).create_bucket(Bucket="tagqa-edge")
        yield endpoint, creds
    finally:  # also when the setup above failed: never leave the server running
        process.kill()
        process.wait(30)
        process.stderr.close()


def _static(creds: dict, secret: str | None = None):
    from awscrt.auth import AwsCredentialsProvider

    return AwsCredentialsProvider.new_static(creds["aws_access_key_id"], secret or creds["aws_secret_access_key"])


def test_s3_put_is_signed_correctly(signing_s3) -> None:
    endpoint, creds = signing_s3
    store = S3Store("tagqa-edge", "site-a", endpoint_url=endpoint, region="us-east-1",
                    credentials_provider=_static(creds))
    key = "raw/edge-feedback/line-1/2026/11/25/20261125T080000000000Z-tag 1+2.jpg"  # space and plus need encoding
    store.put(key, JPEG, "image/jpeg")
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **creds)
    obj = s3.get_object(Bucket="tagqa-edge", Key=f"site-a/{key}")
    assert obj["Body"].read() == JPEG and obj["ContentType"] == "image/jpeg"


def test_s3_put_with_a_wrong_secret_is_refused(signing_s3) -> None:
    endpoint, creds = signing_s3
    store = S3Store("tagqa-edge", "", endpoint_url=endpoint, credentials_provider=_static(creds, "wrong-secret"))
    with pytest.raises(StoreError, match="HTTP 403"):
        store.put("x.jpg", JPEG, "image/jpeg")


def test_s3_unreachable_endpoint_is_a_store_error() -> None:
    store = S3Store("b", "", endpoint_url=f"http://127.0.0.1:{free_port()}", credentials_provider=_static(
        {"aws_access_key_id": "a", "aws_secret_access_key": "b"}))
    with pytest.raises(StoreError, match="PUT http://127.0.0.1"):
        store.put("x.jpg", JPEG, "image/jpeg")


def test_s3_uses_container_credentials_like_greengrass_token_exchange(monkeypatch, moto_endpoint: str) -> None:
    """Greengrass' TokenExchangeService serves credentials at AWS_CONTAINER_CREDENTIALS_FULL_URI with a token."""
    requests = []

    class CredentialEndpoint(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append((self.path, self.headers.get("Authorization")))
            body = json.dumps({"AccessKeyId": "ASIATES", "SecretAccessKey": "s", "Token": "t",
                               "Expiration": "2099-01-01T00:00:00Z"}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), CredentialEndpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI",
                       f"http://localhost:{server.server_port}/2016-11-01/credentialprovider/")
    monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "greengrass-svc-token")
    bucket = f"tagqa-tes-{int(time.time() * 1000)}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1", aws_access_key_id="x",
                 aws_secret_access_key="y").create_bucket(Bucket=bucket)
    try:
        open_store(f"s3://{bucket}/p", endpoint_url=moto_endpoint).put("k.jpg", JPEG, "image/jpeg")
    finally:
        server.shutdown()
    assert requests == [("/2016-11-01/credentialprovider/", "greengrass-svc-token")]


def _queue_with_items(directory: Path, count: int) -> CaptureQueue:
    queue = CaptureQueue(directory, 10**7)
    for i in range(count):
        entry = RingEntry(f"img-{i}", datetime(2026, 11, 25, 8, 0, i, tzinfo=timezone.utc), JPEG, {"i": i})
        queue.put(*build_sidecar("line-1", entry, ["uncertain"], None), priority=PRIORITY_AUTOMATIC)
    return queue


def test_uploader_retries_with_backoff_until_the_store_is_back(tmp_path: Path) -> None:
    """Store unreachable: the queue keeps everything; once reachable, all items arrive, sidecar after image."""
    queue = _queue_with_items(tmp_path / "queue", 4)
    good = LocalFolderStore(tmp_path / "store")
    calls: list[str] = []

    class FlakyStore:
        description = "flaky"
        down = True

        def put(self, key: str, data: bytes, content_type: str) -> None:
            if self.down:
                raise StoreError("connection refused")
            calls.append(key)
            good.put(key, data, content_type)

    flaky = FlakyStore()
    uploader = CaptureUploader(queue, lambda: flaky, min_backoff=0.05, max_backoff=0.2)
    uploader.start()
    try:
        deadline = time.monotonic() + 10  # for both waits together
        wait_until(lambda: uploader.failures >= 3, "three failed uploads", 10, poll=0.02)
        assert uploader.failures >= 3 and queue.depth == 4 and uploader.last_error == "connection refused"
        flaky.down = False
        wait_until(lambda: not queue.depth, "the queue to drain", deadline - time.monotonic(), poll=0.02)
    finally:
        uploader.stop()
    assert queue.depth == 0 and uploader.uploaded == 4 and uploader.last_error is None
    images = [k for k in calls if k.startswith("raw/")]
    assert len(images) == 4 and all(calls[calls.index(k) + 1].startswith("feedback/") for k in images)
    assert sorted(images) == images  # oldest capture first
    assert len(list((tmp_path / "store/feedback").rglob("*.json"))) == 4


class GarbageThenForward:
    """A TCP endpoint on 127.0.0.1: the first ``garbage`` connections get non-HTTP bytes back; later
    ones are forwarded byte for byte to ``target_port`` (the real store)."""

    def __init__(self, target_port: int, garbage: int = 1) -> None:
        import socket

        self._target, self.garbage_left, self.answered_garbage = target_port, garbage, 0
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        import socket

        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if self.garbage_left > 0:
                self.garbage_left -= 1
                client.recv(65536)
                client.sendall(b"\x00\x13garbage, not HTTP\r\n\r\n")
                client.close()
                self.answered_garbage += 1
                continue
            upstream = socket.create_connection(("127.0.0.1", self._target))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()

    def close(self) -> None:
        self._server.close()


def _pipe(source, sink) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            try:
                sock.shutdown(2)
            except OSError:
                pass


def test_uploader_survives_a_store_that_answers_garbage(moto_endpoint: str, tmp_path: Path) -> None:
    """Issue 15.4: non-HTTP bytes raised BadStatusLine, which killed the uploader (0 of 98 uploaded later)."""
    bucket = f"tagqa-garbage-{int(time.time() * 1000)}"
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket=bucket)
    endpoint = GarbageThenForward(int(moto_endpoint.rsplit(":", 1)[1]), garbage=2)
    queue = _queue_with_items(tmp_path / "queue", 5)
    store = S3Store(bucket, "p", endpoint_url=f"http://127.0.0.1:{endpoint.port}",
                    credentials_provider=_static({"aws_access_key_id": "a", "aws_secret_access_key": "b"}))
    uploader = CaptureUploader(queue, lambda: store, min_backoff=0.05, max_backoff=0.2)
    uploader.start()
    try:
        wait_until(lambda: not queue.depth, "the queue to drain", 60, poll=0.05)
    finally:
        uploader.stop()
        endpoint.close()
    assert endpoint.answered_garbage == 2 and uploader.failures == 2
    assert queue.depth == 0 and uploader.uploaded == 5 and uploader.last_error is None
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert len(keys) == 10 and sum(k.endswith(".json") for k in keys) == 5


def test_uploader_sets_aside_an_item_with_a_bad_sidecar(tmp_path: Path) -> None:
    """Issue 15.4: a sidecar that is not JSON raised in json.loads and ended the uploader thread."""
    queue = _queue_with_items(tmp_path / "queue", 3)
    broken = sorted((tmp_path / "queue").glob("*.json"))[1]
    broken.write_bytes(b"{not json")
    uploader = CaptureUploader(queue, lambda: LocalFolderStore(tmp_path / "store"), min_backoff=0.05)
    uploader.start()
    try:
        wait_until(lambda: not queue.depth, "the queue to drain", 30, poll=0.05)
    finally:
        uploader.stop()
    assert queue.depth == 0 and uploader.uploaded == 2 and uploader.bad_items == 1
    assert (tmp_path / "queue/bad" / broken.name).exists()
    assert "unusable sidecar" in (tmp_path / "queue/bad" / (broken.name[:-5] + ".reason")).read_text()
    assert len(list((tmp_path / "store/feedback").rglob("*.json"))) == 2
