"""Where feedback captures are uploaded: a local folder or S3 (any S3 API endpoint).

S3 requests are signed with awscrt's SigV4 signer and sent with urllib, so the device needs
no boto3/botocore (~90 MB). Credentials come from awscrt's default chain: environment,
profile, the container endpoint (``AWS_CONTAINER_CREDENTIALS_FULL_URI``, which is how
Greengrass' token exchange service hands out credentials) and instance metadata.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.parse
import urllib.request
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

_UPLOAD_TIMEOUT_SECONDS = 30


class StoreError(Exception):
    """An upload failed; retry later."""


class FeedbackStore(ABC):
    """Write-only object store for captures."""

    description: str = "store"

    @abstractmethod
    def put(self, key: str, data: bytes, content_type: str) -> None:
        """Store ``data`` under ``key`` (replacing any object there) or raise StoreError."""


class LocalFolderStore(FeedbackStore):
    """Objects are files under ``root``; each appears atomically (written aside, then renamed)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.description = str(self.root)

    def put(self, key: str, data: bytes, content_type: str) -> None:
        target = self.root / key
        if not target.resolve().is_relative_to(self.root.resolve()):
            raise StoreError(f"key {key!r} escapes the store root {self.root}")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.uploading")
            tmp.write_bytes(data)
            os.replace(tmp, target)
        except OSError as exc:
            raise StoreError(f"{target}: {exc.strerror or exc}") from None


class S3Store(FeedbackStore):
    """PUTs to ``s3://bucket/prefix`` signed with SigV4 (awscrt)."""

    def __init__(self, bucket: str, prefix: str = "", *, region: str = "", endpoint_url: str = "",
                 credentials_provider: Any = None) -> None:
        from awscrt import auth

        self._auth = auth
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        self.endpoint_url = endpoint_url.rstrip("/")
        self._credentials = credentials_provider or auth.AwsCredentialsProvider.new_default_chain()
        self.description = f"s3://{bucket}/{self.prefix}" + (f" at {self.endpoint_url}" if endpoint_url else "")

    def _url(self, key: str) -> tuple[str, str, str]:
        """(full URL, host header, path) for ``key``: path-style at custom endpoints, virtual-hosted on AWS."""
        full_key = f"{self.prefix}/{key}" if self.prefix else key
        quoted = urllib.parse.quote(full_key, safe="/-_.~")
        if self.endpoint_url:
            parts = urllib.parse.urlsplit(self.endpoint_url)
            path = f"{parts.path.rstrip('/')}/{self.bucket}/{quoted}"
            return f"{parts.scheme}://{parts.netloc}{path}", parts.netloc, path
        if "." in self.bucket:  # dotted names break the wildcard certificate of virtual-hosted URLs
            host = f"s3.{self.region}.amazonaws.com"
            path = f"/{self.bucket}/{quoted}"
        else:
            host = f"{self.bucket}.s3.{self.region}.amazonaws.com"
            path = f"/{quoted}"
        return f"https://{host}{path}", host, path

    def _signed_headers(self, host: str, path: str, data: bytes, content_type: str) -> list[tuple[str, str]]:
        from awscrt import http

        auth = self._auth
        request = http.HttpRequest("PUT", path, http.HttpHeaders([
            ("Host", host), ("Content-Type", content_type), ("Content-Length", str(len(data)))]))
        config = auth.AwsSigningConfig(
            algorithm=auth.AwsSigningAlgorithm.V4,
            signature_type=auth.AwsSignatureType.HTTP_REQUEST_HEADERS,
            credentials_provider=self._credentials,
            region=self.region,
            service="s3",
            signed_body_value=hashlib.sha256(data).hexdigest(),
            signed_body_header_type=auth.AwsSignedBodyHeaderType.X_AMZ_CONTENT_SHA_256,
            use_double_uri_encode=False,
            should_normalize_uri_path=False,
        )
        try:
            signed = auth.aws_sign_request(request, config).result(timeout=_UPLOAD_TIMEOUT_SECONDS)
        except Exception as exc:  # no credentials from any provider in the chain, or a provider error
            raise StoreError(f"cannot sign the request to {self.description}: {exc}") from None
        return list(signed.headers)

    def put(self, key: str, data: bytes, content_type: str) -> None:
        url, host, path = self._url(key)
        headers = self._signed_headers(host, path, data, content_type)
        request = urllib.request.Request(url, data=data, method="PUT",
                                         headers={name: value for name, value in headers if name.lower() != "host"})
        try:
            with urllib.request.urlopen(request, timeout=_UPLOAD_TIMEOUT_SECONDS) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read(500).decode("utf-8", "replace")
            raise StoreError(f"PUT {url}: HTTP {exc.code} {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise StoreError(f"PUT {url}: {getattr(exc, 'reason', exc)}") from None
        except http.client.HTTPException as exc:  # e.g. BadStatusLine: the endpoint answered something not HTTP
            raise StoreError(f"PUT {url}: not an HTTP answer ({type(exc).__name__}: {exc!r})") from None


def open_store(uri: str, *, endpoint_url: str = "", region: str = "") -> FeedbackStore | None:
    """``s3://bucket/prefix`` or a local folder path; None when ``uri`` is empty (nothing uploads)."""
    if not uri:
        return None
    if uri.startswith("s3://"):
        bucket, _, prefix = uri[len("s3://"):].partition("/")
        if not bucket:
            raise ValueError(f"upload target {uri!r} has no bucket name")
        return S3Store(bucket, prefix, region=region, endpoint_url=endpoint_url)
    if "://" in uri:
        raise ValueError(f"upload target {uri!r}: only s3:// URIs and local folder paths are supported")
    return LocalFolderStore(Path(uri))
