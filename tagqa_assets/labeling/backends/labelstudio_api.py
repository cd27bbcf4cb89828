"""A small HTTP client for the Label Studio REST API (tested against Label Studio 1.23).

Two kinds of token work, told apart by their shape:

* a legacy token (any string; ``label-studio start --user-token T``) is sent as
  ``Authorization: Token T``. Label Studio 1.23 accepts it only when the organization has
  legacy tokens enabled (``--enable-legacy-api-token`` on first start; ``make labelstudio``
  does this);
* a personal access token (a JWT refresh token from Account & Settings) is exchanged at
  ``/api/token/refresh/`` for a short-lived access token, sent as ``Authorization: Bearer``
  and exchanged again shortly before it expires or when the server answers 401.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import requests

_REFRESH_MARGIN_S = 30.0


class LabelStudioError(RuntimeError):
    """Label Studio answered with an error or could not be reached; the message says which call and why."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status  # the HTTP status Label Studio answered, None when it was not reached


def is_personal_access_token(token: str) -> bool:
    """Whether ``token`` is a Label Studio personal access token (a JWT whose ``token_type`` is ``refresh``)."""
    claims = _jwt_claims(token)
    return claims is not None and claims.get("token_type") == "refresh"


def _jwt_claims(token: str) -> dict[str, Any] | None:
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (ValueError, json.JSONDecodeError):
        return None
    return claims if isinstance(claims, dict) else None


class LabelStudioClient:
    """Authenticated JSON calls against one Label Studio server."""

    def __init__(self, url: str, api_token: str, *, timeout_s: float = 60.0, session: requests.Session | None = None) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"Label Studio URL must start with http:// or https://, got {url!r}")
        if not api_token:
            raise ValueError(f"no API token for Label Studio at {url} (set LABEL_STUDIO_API_TOKEN)")
        self.url = url.rstrip("/")
        self._token = api_token
        self._personal = is_personal_access_token(api_token)
        self._access: str | None = None
        self._access_expires = 0.0
        self._timeout_s = timeout_s
        self._session = session or requests.Session()

    def _authorization(self, *, renew: bool = False) -> str:
        if not self._personal:
            return f"Token {self._token}"
        if renew or self._access is None or time.time() > self._access_expires - _REFRESH_MARGIN_S:
            answer = self._send("POST", "/api/token/refresh/", authorization=None, json={"refresh": self._token})
            self._access = str(answer["access"])
            claims = _jwt_claims(self._access) or {}
            self._access_expires = float(claims.get("exp", time.time() + 60))
        return f"Bearer {self._access}"

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send one call (``path`` like ``/api/projects``) and return the decoded JSON body (``None`` when empty).

        Raises ``LabelStudioError`` naming the call, the status and Label Studio's detail on
        any non-2xx answer, with a hint when the server refuses a legacy token.
        """
        try:
            return self._send(method, path, authorization=self._authorization(), **kwargs)
        except _Unauthorized as exc:
            if not self._personal:
                raise LabelStudioError(self._legacy_hint(method, path, exc.detail), status=401) from None
        # The access token expired early (server restart, clock skew): exchange once more.
        try:
            return self._send(method, path, authorization=self._authorization(renew=True), **kwargs)
        except _Unauthorized as exc:
            raise LabelStudioError(f"{method} {self.url}{path}: 401 {exc.detail} (personal access token refused or expired)", status=401) from None

    def get_bytes(self, path: str) -> bytes:
        """Download a file Label Studio serves (e.g. an uploaded image under ``/data/upload/``)."""
        response = self._session.get(self.url + path, headers={"Authorization": self._authorization()}, timeout=self._timeout_s)
        if response.status_code != 200:
            raise LabelStudioError(f"GET {self.url}{path}: {response.status_code} {_detail(response)}", status=response.status_code)
        return response.content

    def _legacy_hint(self, method: str, path: str, detail: str) -> str:
        hint = ""
        if "legacy token" in detail.lower():
            hint = (
                "; this Label Studio has legacy tokens disabled: start it with --enable-legacy-api-token "
                "(`make labelstudio` does), enable them under Organization > API Tokens, or use a personal access token"
            )
        return f"{method} {self.url}{path}: 401 {detail}{hint}"

    def _send(self, method: str, path: str, *, authorization: str | None, **kwargs: Any) -> Any:
        headers = dict(kwargs.pop("headers", {}) or {})
        if authorization:
            headers["Authorization"] = authorization
        try:
            response = self._session.request(method, self.url + path, headers=headers, timeout=self._timeout_s, **kwargs)
        except requests.RequestException as exc:
            raise LabelStudioError(f"{method} {self.url}{path}: Label Studio is not reachable ({exc})") from exc
        if response.status_code == 401:
            raise _Unauthorized(_detail(response))
        if not 200 <= response.status_code < 300:
            raise LabelStudioError(f"{method} {self.url}{path}: {response.status_code} {_detail(response)}", status=response.status_code)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise LabelStudioError(f"{method} {self.url}{path}: answer is not JSON: {response.text[:200]!r}") from exc


class _Unauthorized(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def _detail(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(body, dict):
        detail = body.get("detail") or body.get("validation_errors") or body
        return detail if isinstance(detail, str) else json.dumps(detail)[:500]
    return json.dumps(body)[:500]
