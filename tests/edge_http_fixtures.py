"""A real ``tagqa-edge run --http`` process on a real Mosquitto, a camera that writes frames into its folder,
and a small HTTP client (standard library) for the device's API. Shared by the HTTP tests and
benchmarks/edge_http.py."""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from edge_fixtures import REAL_DATASET, free_port, synthetic_tag_image
from polling import wait_until

TOKEN = "line-1-token-0123456789abcdef"


def real_images(count: int, folder: Path) -> list[Path]:
    """``count`` tag images (the real dataset's good and bad ones alternating; synthetic when it is absent)."""
    folder.mkdir(parents=True, exist_ok=True)
    pools = [sorted((REAL_DATASET / "images" / kind).glob("*.jpg")) for kind in ("bad", "good")]
    out = []
    for i in range(count):
        pool = pools[i % 2]
        target = folder / f"tag-{i:03d}.jpg"
        if pool:
            shutil.copyfile(pool[(i * 7) % len(pool)], target)
        else:
            synthetic_tag_image(target, seed=i)
        out.append(target)
    return out


class EdgeDevice:
    """``python -m edge_runtime run --config ... --http 127.0.0.1:PORT`` with a watched camera folder."""

    def __init__(self, work: Path, model_dir: Path, broker_port: int, *, token: str | None = TOKEN,
                 **config: Any) -> None:
        self.work = work
        self.camera = work / "camera"
        self.camera.mkdir(parents=True, exist_ok=True)
        self.store = work / "store"
        self.state = work / "state"
        self.port = free_port()
        self.token = token
        self.config = {"deviceId": "line-1", "modelDir": str(model_dir), "source": str(self.camera),
                       "broker": f"127.0.0.1:{broker_port}", "stateDir": str(self.state),
                       "uploadPrefix": str(self.store), "folderOnRead": "delete", "folderSettleSeconds": 0.0,
                       "confThreshold": 0.01, "emptySampleRate": 0.0, "randomSampleRate": 0.0,
                       "captureBand": [0.0, 0.0], "healthIntervalSeconds": 1.0, **config}
        if token:
            self.config["httpToken"] = token
        (work / "device.json").write_text(json.dumps(self.config))
        self.log = work / "runtime.log"
        self.process: subprocess.Popen | None = None
        self._written = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self, timeout: float = 90.0) -> None:
        """Start and wait until the API answers (generously: the machine may be busy)."""
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "edge_runtime", "run", "--config", str(self.work / "device.json"),
                 "--http", f"127.0.0.1:{self.port}"], stdout=log, stderr=subprocess.STDOUT)
        process = self.process

        def log_tail() -> str:
            return f"log tail: {self.log.read_text(errors='replace')[-2000:]}"

        def healthy() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"tagqa-edge exited with {process.returncode} before its HTTP API on {self.url} "
                                   f"answered; {log_tail()}")
            return self.request("GET", "/v1/health", timeout=2)[0] == 200
        try:
            wait_until(healthy, f"tagqa-edge's HTTP API on {self.url}", timeout, poll=0.2, error=RuntimeError,
                       retry_on=(OSError,), diagnose=log_tail)
        except RuntimeError:
            self.kill()
            raise

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()

    def shoot(self, source: Path) -> str:
        """The camera writes one frame (atomically, under a new name); returns the name."""
        self._written += 1
        name = f"cam-{self._written:05d}-{source.name}"
        tmp = self.camera / (name + ".part")
        shutil.copyfile(source, tmp)
        tmp.rename(self.camera / name)
        return name

    def headers(self, token: str | None = "default") -> dict[str, str]:
        token = self.token if token == "default" else token
        return {"Authorization": f"Bearer {token}"} if token else {}

    def request(self, method: str, path: str, body: bytes | None = None, *, token: str | None = "default",
                timeout: float = 30.0, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        """One request on a new connection: (status, headers, body)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request(method, path, body=body, headers={**self.headers(token), **(headers or {})})
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def json(self, method: str, path: str, body: bytes | None = None, **kwargs: Any) -> tuple[int, Any]:
        status, _, data = self.request(method, path, body, **kwargs)
        return status, json.loads(data)


class Camera(threading.Thread):
    """Writes a frame into the device's folder every ``interval`` seconds until stopped."""

    def __init__(self, device: EdgeDevice, images: list[Path], interval: float) -> None:
        super().__init__(daemon=True)
        self.device, self.images, self.interval = device, images, interval
        self.names: list[str] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        i = 0
        while not self._stop_event.wait(self.interval):
            self.names.append(self.device.shoot(self.images[i % len(self.images)]))
            i += 1

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10)
