"""The device's HTTP API and operator page against a real ``tagqa-edge`` process, a real Mosquitto, real tag
images and a real headless Chromium: results as the MQTT contract, the page's verdict and its
"wrong result" button, and bad input (oversized, text, truncated, decompression bomb, slow
clients, connection floods, a thousand requests without the token) while the camera keeps going."""

from __future__ import annotations

import io
import json
import socket
import struct
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from edge_fixtures import REPO, MqttCollector, mosquitto, tiny_models  # noqa: F401
from edge_http_fixtures import TOKEN, Camera, EdgeDevice, real_images
from edge_runtime.contracts import validate_frame_error, validate_result
from edge_runtime.device_config import DeviceConfig, DeviceConfigError
from edge_runtime.http_api import ROUTES
from headless_browser import Browser
from polling import wait_until

DETECTIONS, HEALTH = "tagqa/line-1/detections", "tagqa/line-1/health"


@pytest.fixture
def device_factory(tmp_path: Path, tiny_models, mosquitto):  # noqa: F811
    started: list[EdgeDevice] = []

    def start(**config) -> EdgeDevice:
        device = EdgeDevice(tmp_path / f"device-{len(started)}", tiny_models["a"], mosquitto.port, **config)
        started.append(device)
        device.start()
        return device

    yield start
    for device in started:
        device.stop()


def _store_files(device: EdgeDevice, prefix: str) -> list[Path]:
    root = device.store / prefix
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_the_operator_page_shows_the_last_published_verdict_and_flags_a_frame(device_factory, mosquitto,
                                                                             tmp_path: Path) -> None:
    images = real_images(8, tmp_path / "images")
    collector = MqttCollector(mosquitto.port, [DETECTIONS])
    device = device_factory(decisionThreshold=0.02)
    for image in images:
        device.shoot(image)
    published = collector.wait_for(DETECTIONS, lambda m: len(m) >= len(images), timeout=60)
    last = published[-1]
    assert last["schema"] == "tagqa.detection/1"
    with Browser() as browser:
        browser.goto(f"{device.url}#token={TOKEN}")  # the token travels in the fragment, never to a server
        shown = browser.wait_for(
            f"document.getElementById('verdict').dataset.imageId === {json.dumps(last['image_id'])} && "
            "document.querySelectorAll('button.wrong').length >= 8 && "
            "document.getElementById('provider').textContent !== '-' && "
            "document.getElementById('count-ok').textContent !== '-' && "
            "document.getElementById('frame-info').textContent",
            timeout=60, what="the page to show the last published frame")
        assert last["image_id"] in shown
        assert browser.evaluate("document.getElementById('verdict').textContent") == last["verdict"].upper()
        # The counts come from their own request of the same poll, which may have been answered a frame earlier.
        expected = [sum(r["verdict"] == "ok" for r in published), sum(r["verdict"] == "defect" for r in published)]
        compact = json.dumps(expected, separators=(",", ":"))
        browser.wait_for(f"JSON.stringify([+document.getElementById('count-ok').textContent, "
                         f"+document.getElementById('count-defect').textContent]) === '{compact}'",
                         timeout=20, what=f"the hour's counts {expected}")
        assert browser.evaluate("document.getElementById('broker').textContent") == "connected"
        assert browser.evaluate("document.getElementById('provider').textContent") == "CPUExecutionProvider (fp32)"
        # The frame is drawn: the canvas has the image's size and is not blank.
        assert browser.evaluate("[document.getElementById('frame').width, document.getElementById('frame').height]") \
            == [last["image_width"], last["image_height"]]
        browser.wait_for("(() => { const c = document.getElementById('frame'); const d = c.getContext('2d')"
                         ".getImageData(0, 0, c.width, c.height).data; let s = new Set(); "
                         "for (let i = 0; i < d.length; i += 4000) s.add(d[i]); return s.size > 5; })()",
                         timeout=20, what="the frame to be drawn")
        screenshot = browser.screenshot(tmp_path / "operator-page.png")  # kept as the test's artifact
        pixels = np.asarray(Image.open(io.BytesIO(screenshot)).convert("L"))
        assert pixels.shape == (900, 1400) and pixels.std() > 20
        flagged = published[2]
        button = f"button.wrong[data-image-id={json.dumps(flagged['image_id'])}]"
        browser.click(button)
        assert browser.wait_for(f"document.querySelector({json.dumps(button)}).textContent === 'flagged ✓' && "
                                f"document.querySelector({json.dumps(button)}).textContent",
                                timeout=30, what="the feedback to be accepted")
    # Captured with priority and uploaded: raw/edge-feedback/<device>/... with its sidecar.
    sidecars = wait_until(lambda: _store_files(device, "feedback/line-1"), "the flagged frame's upload", 60, poll=0.1)
    assert len(sidecars) == 1, "only the flagged frame was captured"
    sidecar = json.loads(sidecars[0].read_text())
    assert sidecar["image_id"] == flagged["image_id"] and sidecar["reasons"] == ["operator-feedback"]
    assert sidecar["operator_reason"] == f"operator: wrong result (shown {flagged['verdict']})"
    raw = _store_files(device, "raw/edge-feedback/line-1")
    assert [p.name for p in raw] == [sidecars[0].name[:-len(".json")]]
    assert raw[0].read_bytes() == images[2].read_bytes(), "the frame's bytes as the camera wrote them"
    collector.close()


def _encoded(image: Path, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.open(image).convert("RGB").save(buffer, format=fmt)
    return buffer.getvalue()


def test_infer_returns_the_published_record_for_every_format_and_the_api_answers(device_factory, mosquitto,
                                                                                tmp_path: Path) -> None:
    images = real_images(2, tmp_path / "images")
    collector = MqttCollector(mosquitto.port, [DETECTIONS])
    device = device_factory(captureBand=[0.0, 1.0])  # every result is captured: HTTP frames like camera frames
    bodies = {"JPEG": images[0].read_bytes(), **{f: _encoded(images[1], f) for f in ("PNG", "BMP", "TIFF", "WEBP")}}
    answers, ids = {}, {}
    for fmt, body in bodies.items():
        status, record = device.json("POST", "/v1/infer", body, headers={"Content-Type": "application/octet-stream"})
        assert status == 200, (fmt, record)
        validate_result(record)
        assert record["source_name"] == "http" and record["image_id"].startswith("http-")
        assert (record["image_width"], record["image_height"]) == Image.open(io.BytesIO(body)).size
        assert record["captured"] == "uncertain"
        answers[record["image_id"]] = record
        ids[fmt] = record["image_id"]
    published = collector.wait_for(DETECTIONS, lambda m: set(answers) <= {r["image_id"] for r in m})
    assert {r["image_id"]: r for r in published if r["image_id"] in answers} == answers, "the answer is the message"
    # The same image through the camera gets the same detections (same pipeline, same model).
    jpeg_answer = answers[ids["JPEG"]]
    device.shoot(images[0])
    camera = collector.wait_for(DETECTIONS, lambda m: any(r["source_name"].startswith("cam-") for r in m))[-1]
    assert camera["detections"] == jpeg_answer["detections"] and camera["best_score"] == jpeg_answer["best_score"]
    # Captured like any other frame, with the posted bytes.
    sidecars = wait_until(lambda: len(_store_files(device, "feedback/line-1")) >= 6 and _store_files(device, "feedback/line-1"),
                          "six uploads", 60, poll=0.1)
    uploaded = {json.loads(p.read_text())["image_id"]: json.loads(p.read_text()) for p in sidecars}
    assert set(answers) <= set(uploaded)
    assert {uploaded[i]["content_type"] for i in answers} == {"image/jpeg", "image/png", "image/bmp", "image/tiff",
                                                               "image/webp"}
    status, latest = device.json("GET", "/v1/results/latest?n=3")
    newest = [r["image_id"] for r in collector.json(DETECTIONS)[::-1][:3]]
    assert status == 200 and [r["image_id"] for r in latest["results"]] == newest
    assert device.json("GET", "/v1/results/latest?n=0")[0] == 400
    status, model = device.json("GET", "/v1/model")
    assert status == 200 and model["card"]["model_version"] == "1" and model["provider"] == "CPUExecutionProvider"
    assert model["precision"] == "fp32" and model["input"] == [1, 3, 128, 128]
    status, health = device.json("GET", "/v1/health")
    assert status == 200 and health["schema"] == "tagqa.health/1" and health["broker_connected"] is True
    assert health["frames"] == 6 and health["http"]["responses"]["200"] >= 5
    status, counts = device.json("GET", "/v1/counts?minutes=60")
    assert status == 200 and counts["ok"] + counts["defect"] == 6 and counts["error"] == 0
    # Feedback: as on the MQTT topic (the frame goes to the capture queue with priority), or why not.
    http_id = next(iter(answers))
    status, answer = device.json("POST", "/v1/feedback", json.dumps({"image_id": http_id, "reason": "PLC says NOK"}).encode())
    assert status == 202 and answer["queued"] is True
    wait_until(lambda: any(json.loads(p.read_text())["reasons"] == ["uncertain", "operator-feedback"]
                           for p in _store_files(device, "feedback/line-1")), "the flagged frame's upload", 60, poll=0.1)
    assert device.json("POST", "/v1/feedback", b'{"image_id": "never-seen"}')[0] == 404
    assert device.json("POST", "/v1/feedback", b'{"image_id": "bad id!"}')[0] == 400
    status, health = device.json("GET", "/v1/health")
    assert (health["feedback_received"], health["feedback_unknown"], health["feedback_invalid"]) == (3, 1, 1)
    assert device.request("GET", "/v1/nothing")[0] == 404 and device.request("PUT", "/v1/infer")[0] == 405
    assert device.request("GET", "/v1/infer")[0] == 405
    collector.close()


def _bomb_png(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` pixels, with a few rows of data (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = zlib.compress(b"\0" * (width + 1) * 16)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


def _raw_response(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (TimeoutError, ConnectionError):
        pass
    return data


@pytest.mark.slow  # seconds of waiting: in make test, not the quick tier
def test_bad_input_gets_its_status_while_the_camera_keeps_going(device_factory, mosquitto, tmp_path: Path) -> None:
    images = real_images(4, tmp_path / "images")
    collector = MqttCollector(mosquitto.port, [DETECTIONS])
    device = device_factory(httpMaxBodyBytes=2_000_000, httpTimeoutSeconds=2.0, httpMaxConnections=8,
                            httpQueueSize=1, maxFramePixels=4_000_000)
    camera = Camera(device, images, interval=0.2)
    camera.start()

    def camera_results() -> int:
        return sum(r["source_name"].startswith("cam-") for r in collector.json(DETECTIONS))

    try:
        collector.wait_for(DETECTIONS, lambda m: len(m) >= 3, timeout=60)
        before = camera_results()
        # A body over the limit: 413 from the headers, before it is read.
        status, headers, body = device.request("POST", "/v1/infer", b"\xff\xd8\xff" + b"\0" * 2_500_000)
        assert status == 413 and "over the limit of 2000000" in json.loads(body)["error"]
        assert headers["Connection"] == "close"
        # Text: not an image; refused at the door, nothing published.
        status, answer = device.json("POST", "/v1/infer", b"hello, is this the tag inspection?")
        assert status == 400 and "not a JPEG, PNG, BMP, TIFF or WebP image" in answer["error"]
        # A truncated JPEG and a decompression bomb reach the pipeline: an error record each, kept in quarantine.
        status, truncated = device.json("POST", "/v1/infer", images[0].read_bytes()[:4000])
        assert status == 400 and truncated["error"].startswith("corrupt:")
        status, bomb = device.json("POST", "/v1/infer", _bomb_png(40_000, 40_000))
        assert status == 413 and bomb["error"].startswith("too-large:")
        for answer in (truncated, bomb):
            validate_frame_error(answer["record"])
            assert answer["record"]["source_name"] == "http" and answer["record"]["kept"] == "quarantine"
        # No length, a chunked body: 411.
        with socket.create_connection(("127.0.0.1", device.port)) as sock:
            sock.sendall(f"POST /v1/infer HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                         "Transfer-Encoding: chunked\r\n\r\n".encode())
            assert _raw_response(sock, 10).startswith(b"HTTP/1.1 411")
        # Slow clients: headers dribbled out, or a body that never completes: 408 after the 2 s deadline.
        slow = [socket.create_connection(("127.0.0.1", device.port)) for _ in range(3)]
        slow[0].sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n")
        slow[1].sendall(f"POST /v1/infer HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                        "Content-Length: 50000\r\n\r\n".encode() + images[0].read_bytes()[:1000])
        slow[2].sendall(b"GE")
        started = time.monotonic()
        for _ in range(4):  # keep dribbling: each byte arrives within the socket timeout, the request never does
            time.sleep(0.5)
            for sock in slow:
                try:
                    sock.sendall(b"X" if sock is not slow[1] else b"\0")
                except OSError:
                    pass
        replies = [_raw_response(sock, 10) for sock in slow]
        assert all(r.startswith(b"HTTP/1.1 408") for r in replies), replies
        assert time.monotonic() - started < 8
        for sock in slow:
            sock.close()
        wait_until(lambda: device.json("GET", "/v1/health")[1]["http"]["connections"] == 1,
                   "the slow clients' connections to be closed (only the asking one left)", 20, poll=0.1)
        # A connection flood: 8 idle connections take every slot; the 9th is told 503 at once.
        idle = [socket.create_connection(("127.0.0.1", device.port)) for _ in range(8)]
        time.sleep(0.3)
        with socket.create_connection(("127.0.0.1", device.port)) as extra:
            reply = _raw_response(extra, 5)
        assert reply.startswith(b"HTTP/1.1 503") and b"Retry-After: 1" in reply
        for sock in idle:  # the deadline frees the slots: idle connections are closed without a word
            assert _raw_response(sock, 10) == b""
            sock.close()
        time.sleep(0.5)  # the server releases a slot just after the client sees the close
        assert device.request("GET", "/v1/health")[0] == 200
        # A full inference queue: 2 workers + 1 waiting; the rest get 503 with Retry-After.
        barrier = threading.Barrier(7)  # 7 connections: one of the 8 slots stays free
        body = images[1].read_bytes()

        def post(_):
            barrier.wait()
            return device.request("POST", "/v1/infer", body)

        with ThreadPoolExecutor(7) as pool:
            results = list(pool.map(post, range(7)))
        statuses = sorted(r[0] for r in results)
        assert set(statuses) == {200, 503} and statuses.count(200) >= 2, statuses
        assert all(r[1]["Retry-After"] == "1" for r in results if r[0] == 503)
        accepted = {json.loads(r[2])["image_id"] for r in results if r[0] == 200}
        # A thousand requests without the token (and some with a wrong one): 401 each, no body read.
        attempts = [("GET", "/v1/health", None, None), ("POST", "/v1/infer", body, None),
                    ("GET", "/v1/results/latest?n=5", None, "wrong-token-0123456789"),
                    ("POST", "/v1/feedback", b'{"image_id": "x"}', None)]

        def unauthorized(i):
            method, path, payload, token = attempts[i % len(attempts)]
            return device.request(method, path, payload, token=token)[0]

        with ThreadPoolExecutor(3) as pool:  # well within the connection limit: each is answered, none turned away
            assert set(pool.map(unauthorized, range(1000))) == {401}
        assert device.request("GET", "/", token=None)[0] == 200, "the page itself holds no data"
        during = camera_results() - before
    finally:
        camera.stop()
    # The camera kept going: every frame it wrote got its result.
    records = collector.wait_for(DETECTIONS, lambda m: sum(r["source_name"].startswith("cam-") for r in m)
                                 == len(camera.names), timeout=60)
    assert during >= 10, f"only {during} camera results while the API was under bad input"
    http_records = [r for r in records if r["source_name"] == "http"]
    assert {r["image_id"] for r in http_records} == accepted | {truncated["record"]["image_id"],
                                                                bomb["record"]["image_id"]}
    status, health = device.json("GET", "/v1/health")
    assert health["captured"] == 0 and health["capture_queue_depth"] == 0 and health["captures_uploaded"] == 0
    assert not _store_files(device, "raw"), "nothing was captured"
    assert health["quarantined"] == 2 and health["frames_corrupt"] == 2 and health["status"] == "ok"
    assert health["feedback_received"] == 0, "no unauthenticated feedback got through"
    responses = health["http"]["responses"]
    assert responses["401"] == 1000 and responses["408"] == 3 and responses["503-connections"] == 1
    assert (responses["413"], responses["411"]) == (2, 1)
    collector.close()


def test_a_non_loopback_address_needs_a_token(tiny_models, tmp_path: Path) -> None:  # noqa: F811
    with pytest.raises(DeviceConfigError, match="'httpToken' is required when 'http' binds a non-loopback"):
        DeviceConfig.from_mapping({"http": "0.0.0.0:8081"}, source="device.json")
    with pytest.raises(DeviceConfigError, match="'httpToken' must be at least 16"):
        DeviceConfig.from_mapping({"http": "0.0.0.0:8081", "httpToken": "short"}, source="device.json")
    with pytest.raises(DeviceConfigError, match="'http' must be HOST:PORT"):
        DeviceConfig.from_mapping({"http": "8081"}, source="device.json")
    assert DeviceConfig.from_mapping({"http": "0.0.0.0:8081", "httpToken": TOKEN}, source="x").http_token == TOKEN
    for loopback in ("127.0.0.1:8081", "localhost:8081", "[::1]:8081"):
        assert DeviceConfig.from_mapping({"http": loopback}, source="x").http == loopback
    device = EdgeDevice(tmp_path, tiny_models["a"], 1, token=None)
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-m", "edge_runtime", "run", "--config", str(tmp_path / "device.json"),
                           "--http", "0.0.0.0:0"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "httpToken' is required" in done.stderr
    assert device.process is None


def test_the_openapi_description_names_every_route() -> None:
    spec = yaml.safe_load((REPO / "docs" / "edge_http_openapi.yaml").read_text())
    assert spec["openapi"].startswith("3.")
    documented = {(method.upper(), path) for path, item in spec["paths"].items() for method in item}
    assert documented == {(m, p.replace("<image_id>", "{image_id}")) for m, p in ROUTES}
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


@pytest.mark.slow  # seconds of waiting: in make test, not the quick tier
def test_the_http_server_thread_is_supervised(mosquitto, tiny_models, tmp_path: Path) -> None:  # noqa: F811
    """A crash in the server's loop (injected into its poll hook) shows as degraded, is restarted, and serves again."""
    import urllib.request

    from edge_runtime.config_sources import NoConfigSource
    from edge_runtime.publishers import MqttPublisher
    from edge_runtime.service import EdgeRuntime

    (tmp_path / "camera").mkdir()
    runtime = EdgeRuntime(
        config_source=NoConfigSource(),
        overrides={"deviceId": "line-1", "modelDir": str(tiny_models["a"]), "source": str(tmp_path / "camera"),
                   "stateDir": str(tmp_path / "state"), "http": "127.0.0.1:0", "healthIntervalSeconds": 0.5},
        publisher_factory=lambda c: MqttPublisher("127.0.0.1", mosquitto.port, "edge-http-supervision"))
    server, calls = runtime.http.server, {"n": 0}
    original = server.service_actions

    def crash_once() -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("injected into http-server")
        original()

    server.service_actions = crash_once
    thread = threading.Thread(target=runtime.run, daemon=True)
    thread.start()
    try:
        reason = wait_until(lambda: runtime.faults.reasons().get("http-server"), "the crash to be reported", 30, poll=0.1)
        assert "http-server crashed: RuntimeError: injected into http-server" in reason
        assert runtime.health(advance=False)["status"] == "degraded"
        wait_until(lambda: calls["n"] > 4 and "http-server" not in runtime.faults.reasons(), "the restart", 30,
                   poll=0.1)
        with urllib.request.urlopen(f"{runtime.http.url}v1/health", timeout=30) as answer:
            health = json.loads(answer.read())
        assert health["thread_restarts"] == 1 and health["status"] == "ok"
    finally:
        runtime.request_stop()
        thread.join(60)
    assert not thread.is_alive()
