"""SigV4 for the direct sender's POSTs, with the signing key derived once a day.

botocore's ``SigV4Auth`` builds an email-style header object, canonicalises
every header through it and derives the signing key (four HMACs) for every
request: about as much CPU per 25-item batch as the rest of the request. The
key depends only on the secret, the date, the region and the service, so it is
cached; the canonical request is built directly from the few headers the
sender sets. The algorithm is AWS's Signature Version 4 as botocore implements
it, and ``tests/restore/test_signing.py`` checks each signature against
botocore's own for the same request.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

__all__ = ["RequestSigner"]

_ALGORITHM = "AWS4-HMAC-SHA256"
# Headers botocore never signs (botocore.auth.SIGNED_HEADERS_BLACKLIST).
_UNSIGNED = frozenset({"expect", "transfer-encoding", "user-agent", "x-amzn-trace-id"})


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


class RequestSigner:
    """Signs POSTs to one URL for one service and region.

    :meth:`headers` returns the headers to send: the given ones plus
    ``X-Amz-Date``, ``X-Amz-Security-Token`` (temporary credentials) and
    ``Authorization``. Credentials are passed per call (they refresh); the
    derived key is kept per (secret, date) and replaced when either changes.
    """

    def __init__(self, url: str, service: str, region: str) -> None:
        parts = urlsplit(url)
        default_port = {"http": 80, "https": 443}.get(parts.scheme)
        host = parts.hostname or ""
        # As botocore's host header: the port only when it is not the default.
        self._host = host if parts.port in (None, default_port) else f"{host}:{parts.port}"
        self._path = quote(parts.path or "/", safe="/~")
        self._service = service
        self._region = region
        self._key: tuple[str, str, bytes] | None = None  # (secret, date, key)

    def _signing_key(self, secret: str, date: str) -> bytes:
        cached = self._key
        if cached is not None and cached[0] == secret and cached[1] == date:
            return cached[2]
        key = _hmac(("AWS4" + secret).encode(), date)
        for part in (self._region, self._service, "aws4_request"):
            key = _hmac(key, part)
        self._key = (secret, date, key)
        return key

    def headers(
        self,
        headers: Mapping[str, str],
        body: bytes,
        credentials: Any,
        *,
        now: dt.datetime | None = None,
    ) -> dict[str, str]:
        """``headers`` signed for a POST of ``body`` with ``credentials``
        (botocore's frozen credentials: ``access_key``, ``secret_key``, ``token``)."""
        moment = now or dt.datetime.now(dt.UTC)
        amz_date = moment.strftime("%Y%m%dT%H%M%SZ")
        date = amz_date[:8]
        out = dict(headers)
        out["X-Amz-Date"] = amz_date
        if credentials.token:
            out["X-Amz-Security-Token"] = credentials.token
        canonical = {"host": self._host}
        for name, value in out.items():
            lower = name.lower()
            if lower not in _UNSIGNED:
                canonical[lower] = " ".join(value.split())
        names = sorted(canonical)
        signed_headers = ";".join(names)
        canonical_request = "\n".join(
            [
                "POST",
                self._path,
                "",
                "".join(f"{n}:{canonical[n]}\n" for n in names),
                signed_headers,
                hashlib.sha256(body).hexdigest(),
            ]
        )
        scope = f"{date}/{self._region}/{self._service}/aws4_request"
        string_to_sign = "\n".join(
            [
                _ALGORITHM,
                amz_date,
                scope,
                hashlib.sha256(canonical_request.encode()).hexdigest(),
            ]
        )
        signature = hmac.new(
            self._signing_key(credentials.secret_key, date),
            string_to_sign.encode(),
            hashlib.sha256,
        ).hexdigest()
        out["Authorization"] = (
            f"{_ALGORITHM} Credential={credentials.access_key}/{scope}, "
            f"SignedHeaders={signed_headers}, Signature={signature}"
        )
        return out
