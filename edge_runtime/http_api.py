"""The device's HTTP API and the operator's page (``tagqa-edge run --http HOST:PORT`` or ``http`` in the config).

Standard library only (``http.server``): the device install stays small, and the load is a
line PC and a few operator screens, not the internet. Routes (docs/edge_runtime.md,
docs/edge_http_openapi.yaml):

- ``POST /v1/infer``: an image body (JPEG, PNG, BMP, TIFF or WebP, by content) becomes a frame
  with source name ``http`` in the runtime's own pipeline, in order with the camera's frames:
  it is published, captured and kept in the feedback ring like any other; the answer is the
  record published for it.
- ``GET /v1/health``, ``GET /v1/model``, ``GET /v1/results/latest?n=``, ``GET /v1/counts?minutes=``,
  ``GET /v1/frames/<image id>``, ``POST /v1/feedback``; ``GET /`` is the operator page.

Bounds: at most ``httpMaxConnections`` connections (more get 503 at once); a request must
arrive in full within ``httpTimeoutSeconds`` (else 408 and the connection is closed: slow
clients cannot hold threads); bodies over ``httpMaxBodyBytes`` get 413 before they are read;
at most one HTTP frame per worker is in the pipeline and ``httpQueueSize`` more wait (else 503
with Retry-After), so a camera frame waits behind at most one frame's worth of HTTP work.
With ``httpToken`` set, every ``/v1/`` request needs ``Authorization: Bearer <token>``
(checked before a body is read); the page itself carries no data and asks for the token.
"""

from __future__ import annotations

import hmac
import json
import logging
import socket
import threading
import time
from datetime import datetime, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from edge_runtime.contracts import RESULT_SCHEMA, ContractError, parse_feedback
from edge_runtime.device_config import DeviceConfigError, split_http_address
from edge_runtime.imaging import ImageDecodeError, decode_image, encode_jpeg, image_format
from edge_runtime.result_board import ResultBoard
from edge_runtime.sources import Frame, new_image_id
from edge_runtime.supervision import SupervisedThread

if TYPE_CHECKING:
    from edge_runtime.service import EdgeRuntime

log = logging.getLogger(__name__)

HTTP_SOURCE = "http"
ACCEPTED_FORMATS = {"jpg": "JPEG", "png": "PNG", "bmp": "BMP", "tif": "TIFF", "webp": "WebP"}
BROWSER_FORMATS = {"jpg", "png", "bmp", "webp"}  # the page shows other frames re-encoded as JPEG
MAX_LATEST = 256
RETRY_AFTER_SECONDS = 1
_PAGE = "operator_page.html"
# Every route (method, path); docs/edge_http_openapi.yaml describes the same set (a test checks).
ROUTES = (("GET", "/"), ("GET", "/v1/health"), ("GET", "/v1/model"), ("GET", "/v1/results/latest"),
          ("GET", "/v1/counts"), ("GET", "/v1/frames/<image_id>"), ("POST", "/v1/infer"), ("POST", "/v1/feedback"))
# Frame error reasons that are the client's fault, and the status they answer with.
_ERROR_STATUS = {"corrupt": HTTPStatus.BAD_REQUEST, "too-large": HTTPStatus.REQUEST_ENTITY_TOO_LARGE}


class HttpApi:
    """The server of one runtime: bound at construction (a taken port fails the start), served by ``start``."""

    def __init__(self, runtime: "EdgeRuntime") -> None:
        config = runtime.config
        self.runtime = runtime
        self.board = ResultBoard(keep=MAX_LATEST)
        runtime.record_listeners.append(self.board.record)
        self.token = config.http_token
        self.timeout = config.http_timeout_seconds
        self.max_body = config.http_max_body_bytes
        self.counters: dict[str, int] = {}
        self._counter_lock = threading.Lock()
        # One HTTP frame per worker in the pipeline; ``httpQueueSize`` more may wait for a slot.
        self._in_flight = threading.BoundedSemaphore(runtime.workers)
        self._admitted = 0
        self._admission_limit = runtime.workers + config.http_queue_size
        self._admission_lock = threading.Lock()
        self._page = resources.files("edge_runtime").joinpath(_PAGE).read_bytes()
        host, port = split_http_address(config.http)
        try:
            self.server = _Server((host, port), self, config.http_max_connections)
        except OSError as exc:
            raise DeviceConfigError(f"'http' {config.http}: cannot listen there ({exc.strerror or exc})") from None
        self._stop = threading.Event()
        self._thread = SupervisedThread("http-server", self._serve, runtime.faults, stop=self._stop)

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) actually bound (port 0 in the configuration picks a free one)."""
        return self.server.server_address[:2]

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"

    def start(self) -> None:
        self._thread.start()
        log.info("HTTP API and operator page on %s%s", self.url, " (bearer token required)" if self.token else "")

    def stop(self) -> None:
        """Stop accepting and close the listening socket (requests in progress finish on their own threads)."""
        self._stop.set()
        if self._thread.is_alive():  # shutdown() waits for serve_forever, which must be running
            self.server.shutdown()
            self._thread.join(10)
        self.server.server_close()

    def _serve(self, supervisor: SupervisedThread) -> None:
        if self._stop.is_set():
            return
        self.server.supervisor = supervisor
        self.server.serve_forever(poll_interval=0.5)

    # ------------------------------------------------------------- bookkeeping
    def count(self, name: str) -> None:
        with self._counter_lock:
            self.counters[name] = self.counters.get(name, 0) + 1

    def stats(self) -> dict[str, Any]:
        with self._counter_lock:
            counters = dict(sorted(self.counters.items()))
        return {"address": self.url, "connections": self.server.open_connections, "infer_waiting": self._admitted,
                "responses": counters}

    def authorized(self, header: str | None) -> bool:
        if not self.token:
            return True
        scheme, _, given = (header or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self.token.encode())

    # ------------------------------------------------------------------ infer
    def infer(self, data: bytes) -> tuple[int, dict[str, Any], dict[str, str]]:
        """(status, body, extra headers) for an image body already read in full."""
        extension, _ = image_format(data)
        if extension not in ACCEPTED_FORMATS:
            return HTTPStatus.BAD_REQUEST, {"error": f"not a JPEG, PNG, BMP, TIFF or WebP image (the body starts "
                                                     f"with {data[:16]!r})"}, {}
        with self._admission_lock:
            if self._admitted >= self._admission_limit:
                return _busy(f"{self._admitted} inference requests already in progress or waiting")
            self._admitted += 1
        try:
            return self._infer_admitted(data)
        finally:
            with self._admission_lock:
                self._admitted -= 1

    def _infer_admitted(self, data: bytes) -> tuple[int, dict[str, Any], dict[str, str]]:
        deadline = time.monotonic() + self.timeout
        if not self._in_flight.acquire(timeout=self.timeout):
            return _busy(f"no pipeline slot for an HTTP frame within {self.timeout:g} s")
        try:
            frame = Frame(new_image_id(HTTP_SOURCE), HTTP_SOURCE, datetime.now(timezone.utc), data=data)
            waiter = self.board.expect(frame.image_id)
            if not self.runtime.pipeline.submit_external(frame):
                self.board.forget(frame.image_id)
                return _busy("the runtime is stopping")
            record = waiter.wait(max(0.0, deadline - time.monotonic()))
        finally:
            self._in_flight.release()
        if record is None:
            self.board.forget(frame.image_id)
            return (HTTPStatus.GATEWAY_TIMEOUT,
                    {"error": f"no result within {self.timeout:g} s; it is still published when ready",
                     "image_id": frame.image_id}, {})
        if record.get("schema") == RESULT_SCHEMA:
            return HTTPStatus.OK, record, {}
        status = _ERROR_STATUS.get(record.get("reason"), HTTPStatus.INTERNAL_SERVER_ERROR)
        return status, {"error": f"{record.get('reason')}: {record.get('detail')}", "record": record}, {}

    # ---------------------------------------------------------------- the rest
    def feedback(self, payload: bytes) -> tuple[int, dict[str, Any]]:
        """The same effect as a message on ``tagqa/<device>/feedback``: the frame goes to the capture queue."""
        try:
            request = parse_feedback(payload)
        except ContractError as exc:
            self.runtime.metrics.count("feedback_received")
            self.runtime.metrics.count("feedback_invalid")
            return HTTPStatus.BAD_REQUEST, {"error": str(exc)}
        if not self.runtime.feedback.handle(payload):
            return HTTPStatus.NOT_FOUND, {"error": f"{request.image_id} is not among the last "
                                                   f"{self.runtime.ring.size} frames; nothing to capture",
                                          "image_id": request.image_id}
        return HTTPStatus.ACCEPTED, {"image_id": request.image_id, "reason": request.reason, "queued": True}

    def model(self) -> dict[str, Any]:
        loaded = self.runtime.slot.current
        return {"card": loaded.card.to_dict(), "provider": loaded.session.get_providers()[0],
                "providers": loaded.session.get_providers(), "precision": loaded.precision,
                "input": [1, 3, loaded.input_height, loaded.input_width], "directory": str(loaded.directory),
                "label": loaded.label}

    def health(self) -> dict[str, Any]:
        return {**self.runtime.health(advance=False), "http": self.stats()}

    def frame(self, image_id: str) -> tuple[bytes, str] | None:
        """(bytes, content type) of a recent frame for the page; formats browsers cannot show as JPEG."""
        entry = self.runtime.ring.get(image_id)
        if entry is None or not entry.data:
            return None
        extension, mime = image_format(entry.data)
        if extension in BROWSER_FORMATS:
            return entry.data, mime
        try:
            return encode_jpeg(decode_image(entry.data, max_pixels=self.runtime.config.max_frame_pixels)), "image/jpeg"
        except ImageDecodeError:
            return None

    def page(self) -> bytes:
        return self._page


def _busy(why: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    return (HTTPStatus.SERVICE_UNAVAILABLE, {"error": f"busy: {why}", "retry_after_s": RETRY_AFTER_SECONDS},
            {"Retry-After": str(RETRY_AFTER_SECONDS)})


class _Server(ThreadingHTTPServer):
    """A thread per connection, at most ``max_connections`` of them; requests must arrive within the timeout."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], api: HttpApi, max_connections: int) -> None:
        self.api = api
        self.supervisor: SupervisedThread | None = None
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self._slots = threading.BoundedSemaphore(max_connections)
        self.open_connections = 0
        self._reading: dict["_Handler", float] = {}
        self._cut_off: set[socket.socket] = set()
        self._reading_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request, client_address) -> None:
        if not self._slots.acquire(blocking=False):
            self.api.count("503-connections")
            body = json.dumps({"error": "busy: too many open connections"}).encode()
            try:
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                                b"Retry-After: %d\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
                                % (RETRY_AFTER_SECONDS, len(body), body))
            except OSError:
                pass
            self.close_request(request)  # no lingering: this runs on the accepting thread
            return
        with self._reading_lock:
            self.open_connections += 1
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._reading_lock:
                self.open_connections -= 1
            self._slots.release()

    def shutdown_request(self, request) -> None:
        """Close gracefully (FIN after the reply, then drain briefly): closing with unread bytes would send a reset,
        and a reset can make the client lose the reply it has not read yet (a 408 to a slow client, a 413)."""
        try:
            request.shutdown(socket.SHUT_WR)
            request.settimeout(1.0)
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline and request.recv(65536):
                pass
            with self._reading_lock:
                cut_off = request in self._cut_off
                self._cut_off.discard(request)
            if cut_off:  # its read side is shut: recv says EOF at once, so give the client time to read
                time.sleep(0.3)
        except OSError:
            pass
        self.close_request(request)

    def handle_error(self, request, client_address) -> None:
        log.exception("HTTP request from %s failed", client_address[0])

    def watch(self, handler: "_Handler") -> None:
        with self._reading_lock:
            self._reading[handler] = time.monotonic() + self.api.timeout

    def replied_in_time(self, connection: socket.socket) -> None:
        with self._reading_lock:
            self._cut_off.discard(connection)

    def unwatch(self, handler: "_Handler") -> None:
        with self._reading_lock:
            self._reading.pop(handler, None)

    def service_actions(self) -> None:
        """Every poll: end the reads of requests that did not arrive in time (slow or idle clients)."""
        now = time.monotonic()
        with self._reading_lock:
            late = [h for h, deadline in self._reading.items() if deadline < now]
            for handler in late:
                del self._reading[handler]
        for handler in late:
            handler.timed_out = True
            with self._reading_lock:
                self._cut_off.add(handler.connection)
            try:
                handler.connection.shutdown(socket.SHUT_RD)  # wakes the blocked read; the reply can still go out
            except OSError:
                pass
        if self.supervisor is not None:
            self.supervisor.beat()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a line PC reuses its connection
    server_version = "tagqa-edge"
    server: _Server

    def version_string(self) -> str:
        return self.server_version

    def setup(self) -> None:
        # Longer than the request deadline: the deadline (service_actions) decides, with a 408, not a read timeout.
        self.timeout = self.server.api.timeout + 5
        self.timed_out = False
        super().setup()

    @property
    def api(self) -> HttpApi:
        return self.server.api

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        log.debug("%s %s", self.address_string(), format % args)

    # ------------------------------------------------------------ plumbing
    def handle_one_request(self) -> None:
        self._upload_checked = False
        self.command, self.requestline, self.request_version = None, "", "HTTP/1.1"  # until a request line parses
        self.server.watch(self)
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if self.timed_out or not self.raw_requestline.endswith(b"\n"):
                if self.raw_requestline and self.timed_out:
                    self._reply(HTTPStatus.REQUEST_TIMEOUT, {"error": f"request not received within "
                                                                      f"{self.api.timeout:g} s"}, close=True)
                else:  # an idle connection (nothing of a request arrived): closed without a word, at once
                    self.server.replied_in_time(self.connection)
                self.close_connection = True
                return
            if not self.parse_request():
                return
            if self.timed_out:
                self._reply(HTTPStatus.REQUEST_TIMEOUT, {"error": f"headers not received within {self.api.timeout:g} s"},
                            close=True)
                return
            handler = {"GET": self._get, "HEAD": self._get, "POST": self._post}.get(self.command)
            if handler is None:
                self._reply(HTTPStatus.METHOD_NOT_ALLOWED, {"error": f"method {self.command} not allowed"},
                            close=True, headers={"Allow": "GET, HEAD, POST"})
                return
            handler()
            self.wfile.flush()
        except (TimeoutError, ConnectionError):
            self.close_connection = True
        finally:
            self.server.unwatch(self)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The stdlib's parse errors, as JSON; a request cut off by the deadline is a 408 whatever broke."""
        if self.timed_out:
            code, message = HTTPStatus.REQUEST_TIMEOUT, f"request not received within {self.api.timeout:g} s"
        self._reply(code, {"error": message or HTTPStatus(code).phrase}, close=True)

    def handle_expect_100(self) -> bool:
        """Refuse an unauthorized or oversized upload before the client sends it."""
        if self.command == "POST" and self._refuse_upload():
            return False
        return super().handle_expect_100()

    def _reply(self, status: int, body: Any, *, close: bool = False, headers: dict[str, str] | None = None,
               content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
        self.api.count(str(int(status)))
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if close:
            self.close_connection = True
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _unauthorized(self) -> bool:
        if self.api.authorized(self.headers.get("Authorization")):
            return False
        self._reply(HTTPStatus.UNAUTHORIZED, {"error": "a bearer token is required (Authorization: Bearer ...)"},
                    close=self.command == "POST", headers={"WWW-Authenticate": 'Bearer realm="tagqa-edge"'})
        return True

    def _refuse_upload(self) -> bool:
        """Answer (and return True) when a POST must not be read: no token, no or too large a length."""
        if self._upload_checked:
            return False
        if self._unauthorized():
            return True
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding") or length is None:
            self._reply(HTTPStatus.LENGTH_REQUIRED, {"error": "send the body with a Content-Length"}, close=True)
            return True
        if not length.isdigit():
            self._reply(HTTPStatus.BAD_REQUEST, {"error": f"bad Content-Length {length!r}"}, close=True)
            return True
        limit = self.api.max_body if self.path.startswith("/v1/infer") else 64 * 1024
        if int(length) > limit:
            self._reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                        {"error": f"body of {int(length)} bytes is over the limit of {limit} bytes"}, close=True)
            return True
        self._upload_checked = True
        return False

    def _read_body(self) -> bytes | None:
        """The whole body, or None after answering 408 (it did not arrive within the timeout)."""
        length = int(self.headers["Content-Length"])
        chunks, left = [], length
        while left:
            chunk = self.rfile.read(min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        self.server.unwatch(self)
        if left:
            self._reply(HTTPStatus.REQUEST_TIMEOUT if self.timed_out else HTTPStatus.BAD_REQUEST,
                        {"error": f"body ended after {length - left} of {length} bytes"
                                  + (f" (not received within {self.api.timeout:g} s)" if self.timed_out else "")},
                        close=True)
            return None
        return b"".join(chunks)

    # --------------------------------------------------------------- routes
    def _get(self) -> None:
        self.server.unwatch(self)
        url = urlsplit(self.path)
        if url.path in ("/", "/index.html"):
            self._reply(HTTPStatus.OK, self.api.page(), content_type="text/html; charset=utf-8")
            return
        if not url.path.startswith("/v1/"):
            self._reply(HTTPStatus.NOT_FOUND, {"error": f"no such path {url.path}"})
            return
        if self._unauthorized():
            return
        query = parse_qs(url.query)
        if url.path == "/v1/health":
            self._reply(HTTPStatus.OK, self.api.health())
        elif url.path == "/v1/model":
            self._reply(HTTPStatus.OK, self.api.model())
        elif url.path == "/v1/results/latest":
            n = _int_arg(query, "n", 1, 1, MAX_LATEST)
            if n is None:
                self._reply(HTTPStatus.BAD_REQUEST, {"error": f"'n' must be an integer from 1 to {MAX_LATEST}"})
            else:
                self._reply(HTTPStatus.OK, {"results": self.api.board.latest(n)})
        elif url.path == "/v1/counts":
            minutes = _int_arg(query, "minutes", 60, 1, self.api.board.window_minutes)
            if minutes is None:
                self._reply(HTTPStatus.BAD_REQUEST,
                            {"error": f"'minutes' must be an integer from 1 to {self.api.board.window_minutes}"})
            else:
                self._reply(HTTPStatus.OK, self.api.board.counts(minutes))
        elif url.path.startswith("/v1/frames/"):
            found = self.api.frame(url.path[len("/v1/frames/"):])
            if found is None:
                self._reply(HTTPStatus.NOT_FOUND, {"error": "frame not among the recent frames"})
            else:
                self._reply(HTTPStatus.OK, found[0], content_type=found[1])
        elif url.path in ("/v1/infer", "/v1/feedback"):
            self._reply(HTTPStatus.METHOD_NOT_ALLOWED, {"error": f"{url.path} takes POST"}, headers={"Allow": "POST"})
        else:
            self._reply(HTTPStatus.NOT_FOUND, {"error": f"no such path {url.path}"})

    def _post(self) -> None:
        path = urlsplit(self.path).path
        if path not in ("/v1/infer", "/v1/feedback"):
            self.server.unwatch(self)
            status = HTTPStatus.METHOD_NOT_ALLOWED if path in ("/", "/v1/health", "/v1/model") else HTTPStatus.NOT_FOUND
            self._reply(status, {"error": f"no POST on {path}"}, close=True)
            return
        if self._refuse_upload():
            return
        body = self._read_body()
        if body is None:
            return
        if path == "/v1/feedback":
            status, answer = self.api.feedback(body)
            self._reply(status, answer)
            return
        status, answer, headers = self.api.infer(body)
        self._reply(status, answer, headers=headers)


def _int_arg(query: dict[str, list[str]], name: str, default: int, low: int, high: int) -> int | None:
    values = query.get(name)
    if not values:
        return default
    text = values[-1]
    if not text.isdigit() or not low <= int(text) <= high:
        return None
    return int(text)
