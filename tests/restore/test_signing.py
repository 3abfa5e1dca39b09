"""The direct sender's SigV4 signer gives botocore's signature for the same request,
also across midnight and credential rotation, where its cached key must change."""

from __future__ import annotations

import datetime as dt

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials

from ddb_backup.restore.signing import RequestSigner

BODY = b'{"RequestItems":{"t":[]},"ReturnConsumedCapacity":"TOTAL"}'
HEADERS = {
    "X-Amz-Target": "DynamoDB_20120810.BatchWriteItem",
    "Content-Type": "application/x-amz-json-1.0",
    "User-Agent": "aiobotocore/3 test",
}
NOON = dt.datetime(2026, 12, 5, 12, 0, 0, tzinfo=dt.UTC)


def botocore_signature(
    url: str, headers: dict[str, str], creds: ReadOnlyCredentials, region: str
) -> str:
    """botocore's Authorization header for the request ``headers`` describe, at its
    ``X-Amz-Date`` (``add_auth`` would take the clock's time, so its steps are used)."""
    request = AWSRequest(method="POST", url=url, data=BODY, headers=dict(HEADERS))
    request.context["timestamp"] = headers["X-Amz-Date"]
    request.headers["X-Amz-Date"] = headers["X-Amz-Date"]
    if creds.token:
        request.headers["X-Amz-Security-Token"] = creds.token
    auth = SigV4Auth(
        Credentials(str(creds.access_key), str(creds.secret_key), creds.token), "dynamodb", region
    )
    string_to_sign = auth.string_to_sign(request, auth.canonical_request(request))
    scope = "/".join([str(creds.access_key), *auth.scope(request).split("/")[1:]])
    return (
        f"AWS4-HMAC-SHA256 Credential={scope}, "
        f"SignedHeaders={auth.signed_headers(auth.headers_to_sign(request))}, "
        f"Signature={auth.signature(string_to_sign, request)}"
    )


@pytest.mark.parametrize(
    "url",
    [
        "https://dynamodb.eu-west-1.amazonaws.com/",
        "http://127.0.0.1:8123/",
        "https://dynamodb-fips.us-east-1.amazonaws.com:443/",
    ],
)
@pytest.mark.parametrize("token", ["session-token", None])
def test_signature_is_botocores(url: str, token: str | None) -> None:
    creds = ReadOnlyCredentials("AKIDEXAMPLE", "secret", token)
    signed = RequestSigner(url, "dynamodb", "eu-west-1").headers(HEADERS, BODY, creds, now=NOON)
    assert signed["X-Amz-Date"] == "20261205T120000Z"
    assert ("X-Amz-Security-Token" in signed) is (token is not None)
    assert signed["Authorization"] == botocore_signature(url, signed, creds, "eu-west-1")
    assert {k: signed[k] for k in HEADERS} == HEADERS  # sent as given


def test_cached_key_follows_the_date_and_the_credentials() -> None:
    url = "https://dynamodb.eu-west-1.amazonaws.com/"
    signer = RequestSigner(url, "dynamodb", "eu-west-1")
    first = ReadOnlyCredentials("AKID1", "secret-1", None)
    rotated = ReadOnlyCredentials("AKID2", "secret-2", "token")
    moments = [
        (first, dt.datetime(2026, 12, 5, 23, 59, 59, tzinfo=dt.UTC)),
        (first, dt.datetime(2026, 12, 6, 0, 0, 1, tzinfo=dt.UTC)),  # a new day: a new key
        (rotated, dt.datetime(2026, 12, 6, 0, 0, 2, tzinfo=dt.UTC)),  # a new secret
        (first, dt.datetime(2026, 12, 6, 0, 0, 3, tzinfo=dt.UTC)),  # and back
    ]
    for creds, now in moments:
        signed = signer.headers(HEADERS, BODY, creds, now=now)
        assert signed["Authorization"] == botocore_signature(url, signed, creds, "eu-west-1")
