"""A fault-injecting HTTP proxy in front of the moto server, for chaos tests.

The code under test reaches it only through ``AWS_ENDPOINT_URL``, like any
endpoint. Every request is parsed, matched against the configured
:class:`Fault` rules (by service and operation), and then either answered
with an injected failure or forwarded to moto, whose answer may in turn be
damaged (held-back ``UnprocessedItems``, a body cut off part-way, a reset).
Decisions come from one ``random.Random(seed)``, so a run is reproducible
from its seed (up to the order in which concurrent requests arrive).

Faults:

* ``throttle``      DynamoDB 400 ``ProvisionedThroughputExceededException`` /
                    ``ThrottlingException`` (JSON ``__type`` body botocore parses)
* ``unprocessed``   BatchWriteItem: moto processes only part of the batch, the
                    rest comes back as ``UnprocessedItems``
* ``http_error``    500/503 with the service's own error body (DynamoDB JSON,
                    S3 XML), e.g. S3 ``SlowDown``; or, ``html=True``, an HTML
                    error page as a crashing server or a proxy sends
* ``latency``       a delay before the request is forwarded
* ``reset``         the connection reset before any response (optionally after
                    moto processed the request: the answer is lost, not the work)
* ``cut_body``      headers with the full ``Content-Length``, part of the body,
                    then the connection closed

:attr:`FaultProxy.counts` counts what was injected per kind, and
:attr:`FaultProxy.requests` logs every request (service, operation, headers)
so tests can check, e.g., that ``x-amz-expected-bucket-owner`` was sent.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import re
import socket
import struct
import threading
import time
import urllib.parse
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Fault", "FaultProxy", "RequestRecord", "s3_operation"]

_DDB_PREFIX = "com.amazonaws.dynamodb.v20120810#"
_SCOPE_RE = re.compile(r"Credential=[^/,\s]+/\d{8}/[^/]+/([^/]+)/aws4_request")
# Hop-by-hop headers, and those the proxy recomputes.
_DROP_REQUEST = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "expect", "te"}
)
_DROP_RESPONSE = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length"})


@dataclass
class Fault:
    """One rule: which requests it matches, how often it fires, what it does.

    ``rate`` is the probability of firing on a matching request; ``every=n``
    instead fires deterministically on every n-th matching request; ``skip``
    lets the first matching requests through; ``limit`` caps the injections.
    Prefer the named constructors (:meth:`throttle`, :meth:`unprocessed`...).
    """

    kind: str
    service: str | None = None
    operation: str | None = None
    rate: float = 1.0
    every: int | None = None
    skip: int = 0
    limit: int | None = None
    status: int = 500
    code: str | None = None
    delay: float = 0.0
    fraction: float | None = None
    after: bool = False
    html: bool = False
    seen: int = field(default=0, init=False)
    injected: int = field(default=0, init=False)

    # -- constructors ---------------------------------------------------------------

    @classmethod
    def throttle(
        cls,
        rate: float = 1.0,
        *,
        code: str = "ProvisionedThroughputExceededException",
        operation: str | None = None,
        **kw: Any,
    ) -> Fault:
        """DynamoDB throttling (400 with the error's ``__type``)."""
        kw.setdefault("service", "dynamodb")
        return cls("throttle", operation=operation, rate=rate, status=400, code=code, **kw)

    @classmethod
    def unprocessed(cls, rate: float = 1.0, *, fraction: float | None = None, **kw: Any) -> Fault:
        """BatchWriteItem hands back a random part (or ``fraction``) unprocessed."""
        return cls("unprocessed", "dynamodb", "BatchWriteItem", rate=rate, fraction=fraction, **kw)

    @classmethod
    def http_error(
        cls,
        status: int = 500,
        *,
        service: str | None = None,
        operation: str | None = None,
        rate: float = 1.0,
        code: str | None = None,
        **kw: Any,
    ) -> Fault:
        """5xx with the service's own error body."""
        return cls("http_error", service, operation, rate=rate, status=status, code=code, **kw)

    @classmethod
    def slow_down(cls, rate: float = 1.0, *, operation: str | None = None, **kw: Any) -> Fault:
        """S3 503 ``SlowDown``."""
        return cls.http_error(
            503, service="s3", operation=operation, rate=rate, code="SlowDown", **kw
        )

    @classmethod
    def latency(
        cls,
        delay: float,
        *,
        service: str | None = None,
        operation: str | None = None,
        rate: float = 1.0,
        **kw: Any,
    ) -> Fault:
        return cls("latency", service, operation, rate=rate, delay=delay, **kw)

    @classmethod
    def reset(
        cls,
        rate: float = 1.0,
        *,
        service: str | None = None,
        operation: str | None = None,
        after: bool = False,
        **kw: Any,
    ) -> Fault:
        """Connection reset before a response; ``after=True``: once moto did the work."""
        return cls("reset", service, operation, rate=rate, after=after, **kw)

    @classmethod
    def cut_body(
        cls, rate: float = 1.0, *, operation: str = "GetObject", service: str = "s3", **kw: Any
    ) -> Fault:
        """Full ``Content-Length`` announced, part of the body sent, connection closed."""
        return cls("cut_body", service, operation, rate=rate, **kw)

    # -- matching -------------------------------------------------------------------

    def matches(self, service: str | None, operation: str | None) -> bool:
        return (self.service is None or self.service == service) and (
            self.operation is None or self.operation == operation
        )

    def fires(self, rng: random.Random) -> bool:
        """Count a matching request and decide (called with the proxy's lock held)."""
        self.seen += 1
        if self.seen <= self.skip or (self.limit is not None and self.injected >= self.limit):
            return False
        if self.every is not None:
            hit = (self.seen - self.skip) % self.every == 0
        else:
            hit = rng.random() < self.rate
        if hit:
            self.injected += 1
        return hit

    @property
    def label(self) -> str:
        if self.kind == "http_error":
            return f"http_{self.status}" + (f"_{self.code}" if self.code else "")
        if self.kind == "throttle":
            return f"throttle_{self.code}"
        return self.kind


@dataclass(frozen=True)
class RequestRecord:
    """What the proxy saw (headers lower-cased) and what it did to it."""

    service: str | None
    operation: str | None
    method: str
    path: str
    headers: dict[str, str]
    faults: tuple[str, ...]
    body: bytes = b""  # DynamoDB requests only (JSON); S3 bodies are not kept


def s3_operation(method: str, path: str, query: dict[str, list[str]], headers: Any) -> str:
    """S3 operation name from method, path-style URL and query (enough for tests)."""
    bucket, _, key = path.lstrip("/").partition("/")
    if not bucket:
        return "ListBuckets"
    if key:
        if method == "GET":
            return "GetObject"
        if method == "HEAD":
            return "HeadObject"
        if method == "PUT":
            if headers.get("x-amz-copy-source"):
                return "CopyObject"
            return "UploadPart" if "partNumber" in query else "PutObject"
        if method == "DELETE":
            return "DeleteObject"
        if method == "POST":
            return "CreateMultipartUpload" if "uploads" in query else "CompleteMultipartUpload"
        return method
    if method == "GET":
        return "ListObjectsV2" if query.get("list-type") == ["2"] else "ListObjects"
    if method == "HEAD":
        return "HeadBucket"
    if method == "PUT":
        return "CreateBucket" if not query else "PutBucketSubresource"
    if method == "POST" and "delete" in query:
        return "DeleteObjects"
    if method == "DELETE":
        return "DeleteBucket"
    return method


class FaultProxy:
    """A threaded HTTP proxy on 127.0.0.1 (port chosen by the OS) in front of moto.

    Use as a context manager; :attr:`endpoint` is what ``AWS_ENDPOINT_URL``
    should point at. With no faults configured it forwards everything as is.
    """

    def __init__(self, upstream: str, *, seed: int = 0) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        self._upstream = (parsed.hostname or "127.0.0.1", parsed.port or 80)
        self.seed = seed
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self.counts: Counter[str] = Counter()
        self.requests: list[RequestRecord] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- configuration --------------------------------------------------------------

    def set_faults(self, *faults: Fault, seed: int | None = None) -> None:
        """Replace the rules (and optionally reseed); counters are kept."""
        with self._lock:
            self._faults = list(faults)
            if seed is not None:
                self.seed = seed
                self._rng = random.Random(seed)

    def clear_faults(self) -> None:
        self.set_faults()

    @property
    def faults(self) -> list[Fault]:
        return list(self._faults)

    @property
    def total_injected(self) -> int:
        """Faults injected, every kind together (held-back items not counted twice)."""
        return sum(n for kind, n in self.counts.items() if kind != "unprocessed_items")

    @contextlib.contextmanager
    def faults_off(self) -> Iterator[None]:
        """Pass everything through for the block (set-up and checks)."""
        with self._lock:
            saved, self._faults = self._faults, []
        try:
            yield
        finally:
            with self._lock:
                self._faults = saved

    def requests_for(
        self, service: str | None = None, operation: str | None = None
    ) -> list[RequestRecord]:
        with self._lock:
            return [
                r
                for r in self.requests
                if (service is None or r.service == service)
                and (operation is None or r.operation == operation)
            ]

    # -- life cycle -----------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        assert self._server is not None, "start() first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FaultProxy:
        proxy = self

        class Handler(_ProxyHandler):
            owner = proxy

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.02,), name="fault-proxy", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- decisions (called from handler threads) ------------------------------------

    def _decide(self, service: str | None, operation: str | None) -> list[Fault]:
        """The rules that fire for this request (at most one of each kind)."""
        fired: list[Fault] = []
        with self._lock:
            kinds: set[str] = set()
            for f in self._faults:
                if f.kind in kinds or not f.matches(service, operation):
                    continue
                if f.fires(self._rng):
                    fired.append(f)
                    kinds.add(f.kind)
        return fired

    def _count(self, label: str, n: int = 1) -> None:
        with self._lock:
            self.counts[label] += n

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self.requests.append(record)

    def _split(self, n: int, fraction: float | None) -> int:
        """How many of ``n`` write requests to hold back (at least one)."""
        with self._lock:
            if fraction is not None:
                return min(n, max(1, round(n * fraction)))
            return self._rng.randint(1, n)

    def _pick(self, n: int, k: int) -> set[int]:
        with self._lock:
            return set(self._rng.sample(range(n), k))

    def _cut_point(self, length: int) -> int:
        with self._lock:
            return self._rng.randint(1, max(1, length - 1))


class _ProxyHandler(BaseHTTPRequestHandler):
    owner: FaultProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests assert on the request log instead."""

    def do_GET(self) -> None:
        self._handle()

    do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = do_GET

    # -- request --------------------------------------------------------------------

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _classify(self) -> tuple[str | None, str | None]:
        target = self.headers.get("X-Amz-Target", "")
        if target.startswith("DynamoDB_"):
            return "dynamodb", target.split(".", 1)[1]
        if self.path.startswith("/moto-api"):
            return "moto", None
        match = _SCOPE_RE.search(self.headers.get("Authorization", ""))
        service = match.group(1) if match else None
        if service == "s3":
            url = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
            headers = {k.lower(): v for k, v in self.headers.items()}
            return "s3", s3_operation(self.command, url.path, query, headers)
        if service == "dynamodb":
            return "dynamodb", target.split(".", 1)[-1] or None
        return service, None

    def _handle(self) -> None:
        owner = self.owner
        body = self._read_body()
        service, operation = self._classify()
        fired = owner._decide(service, operation) if service != "moto" else []
        owner._record(
            RequestRecord(
                service=service,
                operation=operation,
                method=self.command,
                path=self.path,
                headers={k.lower(): v for k, v in self.headers.items()},
                faults=tuple(f.label for f in fired),
                body=body if service == "dynamodb" else b"",
            )
        )
        by_kind = {f.kind: f for f in fired}
        if latency := by_kind.get("latency"):
            owner._count("latency")
            time.sleep(latency.delay)
        reset = by_kind.get("reset")
        if reset is not None and not reset.after:
            owner._count("reset")
            self._reset()
            return
        if (error := by_kind.get("throttle")) or (error := by_kind.get("http_error")):
            owner._count(error.label)
            self._send_error(service, error)
            return
        held: dict[str, list[Any]] = {}
        if (unproc := by_kind.get("unprocessed")) is not None:
            body, held = self._hold_back(body, unproc)
        if held and not body:
            # Everything held back: DynamoDB would refuse an empty batch, so answer here.
            status, reason, headers, payload = 200, "OK", [], b"{}"
            headers = [("Content-Type", "application/x-amz-json-1.0")]
        else:
            status, reason, headers, payload = self._forward(body)
        if held and status == 200:
            payload, headers = _add_unprocessed(payload, headers, held)
        if reset is not None:
            owner._count("reset_after")
            self._reset()
            return
        if (
            by_kind.get("cut_body") is not None
            and status in (200, 206)
            and (len(payload) > 1 and self.command != "HEAD")
        ):
            owner._count("cut_body")
            self._send(status, reason, headers, payload, cut_at=owner._cut_point(len(payload)))
            return
        self._send(status, reason, headers, payload)

    # -- faults ---------------------------------------------------------------------

    def _hold_back(self, body: bytes, fault: Fault) -> tuple[bytes, dict[str, list[Any]]]:
        """Split a BatchWriteItem body: what moto gets, and what comes back unprocessed."""
        doc = json.loads(body)
        flat = [(t, r) for t, reqs in doc.get("RequestItems", {}).items() for r in reqs]
        if not flat:
            return body, {}
        k = self.owner._split(len(flat), fault.fraction)
        chosen = self.owner._pick(len(flat), k)
        held: dict[str, list[Any]] = {}
        kept: dict[str, list[Any]] = {}
        for i, (table, req) in enumerate(flat):
            (held if i in chosen else kept).setdefault(table, []).append(req)
        self.owner._count("unprocessed")
        self.owner._count("unprocessed_items", k)
        if not kept:
            return b"", held
        doc["RequestItems"] = kept
        return json.dumps(doc).encode(), held

    def _reset(self) -> None:
        """RST instead of FIN: the client sees 'connection reset by peer'."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()

    def _send_error(self, service: str | None, fault: Fault) -> None:
        status = fault.status
        if fault.html:
            payload = (
                b"<!doctype html>\n<html lang=en>\n<title>500 Internal Server Error</title>\n"
                b"<h1>Internal Server Error</h1>\n<p>The server encountered an internal error "
                b"and was unable to complete your request.</p>\n"
            )
            ctype = "text/html; charset=utf-8"
        elif service == "s3" or (service is None and fault.code == "SlowDown"):
            code = fault.code or {500: "InternalError", 503: "ServiceUnavailable"}.get(
                status, "InternalError"
            )
            payload = (
                '<?xml version="1.0" encoding="UTF-8"?>\n'
                f"<Error><Code>{code}</Code><Message>injected fault</Message>"
                "<RequestId>FAULTINJECTED</RequestId><HostId>faults</HostId></Error>"
            ).encode()
            ctype = "application/xml"
        else:
            code = fault.code or {500: "InternalServerError", 503: "ServiceUnavailable"}.get(
                status, "InternalServerError"
            )
            payload = json.dumps(
                {"__type": _DDB_PREFIX + code, "message": "injected fault"}
            ).encode()
            ctype = "application/x-amz-json-1.0"
        headers = [
            ("Content-Type", ctype),
            ("x-amzn-RequestId", "FAULTINJECTED"),
            ("x-amz-crc32", str(zlib.crc32(payload) & 0xFFFFFFFF)),
        ]
        reason = {400: "Bad Request", 500: "Internal Server Error", 503: "Service Unavailable"}
        self._send(status, reason.get(status, "Error"), headers, payload)

    # -- upstream and downstream ----------------------------------------------------

    def _forward(self, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        host, port = self.owner._upstream
        conn = http.client.HTTPConnection(host, port, timeout=60)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _DROP_REQUEST}
            headers["Content-Length"] = str(len(body))
            headers["Connection"] = "close"
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            payload = resp.read()
            out = list(resp.getheaders())
            if self.command == "HEAD":
                payload = b""
            return resp.status, resp.reason, out, payload
        finally:
            conn.close()

    def _send(
        self,
        status: int,
        reason: str,
        headers: list[tuple[str, str]],
        payload: bytes,
        *,
        cut_at: int | None = None,
    ) -> None:
        self.send_response_only(status, reason)
        length = None
        for name, value in headers:
            low = name.lower()
            if low == "content-length":
                length = value
            if low not in _DROP_RESPONSE:
                self.send_header(name, value)
        if self.command == "HEAD":
            self.send_header("Content-Length", length or "0")
        else:
            self.send_header("Content-Length", str(len(payload)))
        if cut_at is not None:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command == "HEAD":
            return
        if cut_at is None:
            self.wfile.write(payload)
            return
        self.wfile.write(payload[:cut_at])
        self.wfile.flush()
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


def _add_unprocessed(
    payload: bytes, headers: list[tuple[str, str]], held: dict[str, list[Any]]
) -> tuple[bytes, list[tuple[str, str]]]:
    doc = json.loads(payload or b"{}")
    unprocessed = doc.setdefault("UnprocessedItems", {})
    for table, reqs in held.items():
        unprocessed.setdefault(table, []).extend(reqs)
    new = json.dumps(doc).encode()
    # botocore checks DynamoDB's x-amz-crc32 against the body: recompute it.
    out = [(k, v) for k, v in headers if k.lower() != "x-amz-crc32"]
    out.append(("x-amz-crc32", str(zlib.crc32(new) & 0xFFFFFFFF)))
    return new, out
