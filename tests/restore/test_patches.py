"""The private aiobotocore members the direct sender relies on, pinned.

As aiobotocore's own ``tests/test_patches.py`` pins the botocore code it
overrides, this pins what :mod:`ddb_backup.restore.sender` reads from a
client: an upgrade that moves or reshapes one fails here, loudly, instead of
the restore silently taking the slower generic path (``default_sender`` falls
back when :func:`supports_direct_path` says no).
"""

from __future__ import annotations

import inspect

from aiobotocore.client import AioBaseClient
from aiobotocore.httpsession import AIOHTTPSession

from ddb_backup.aws import AwsClients
from ddb_backup.restore.sender import _CLIENT_MEMBERS, _DirectSender, supports_direct_path
from ddb_backup.restore.writer import default_sender


def test_the_client_offers_every_member_the_direct_sender_reads(aws: AwsClients) -> None:
    client = aws.dynamodb
    for name in _CLIENT_MEMBERS:
        assert hasattr(client, name), name
    signer = client._request_signer
    assert hasattr(signer, "_credentials")
    assert isinstance(signer.signing_name, str)
    assert isinstance(signer.region_name, str)
    assert callable(client._user_agent_creator.to_string)
    assert callable(client._endpoint.http_session.send)
    assert supports_direct_path(client)
    assert isinstance(default_sender(client), _DirectSender)


def test_the_endpoint_ruleset_is_resolved_as_the_sender_calls_it() -> None:
    method = vars(AioBaseClient)["_resolve_endpoint_ruleset"]  # private: not in the stubs
    assert inspect.iscoroutinefunction(method)
    params = list(inspect.signature(method).parameters)
    assert params[:4] == ["self", "operation_model", "params", "request_context"]


def test_the_http_session_exposes_its_aiohttp_session_and_proxies(aws: AwsClients) -> None:
    get_session = vars(AIOHTTPSession)["_get_session"]  # private: not in the stubs
    assert inspect.iscoroutinefunction(get_session)
    assert list(inspect.signature(get_session).parameters) == ["self", "proxy_url"]
    session = aws.dynamodb._endpoint.http_session
    assert isinstance(session, AIOHTTPSession)
    proxies = vars(session)["_proxy_config"]
    assert callable(proxies.proxy_url_for)
    assert callable(proxies.proxy_headers_for)
    # restore/transport.py gives reqwest the certificate check aiohttp would make.
    verify = vars(session)["_verify"]
    assert verify is False or verify is True or isinstance(verify, str)


def test_the_per_call_context_is_importable() -> None:
    from aiobotocore.context import start_as_current_context

    assert callable(start_as_current_context)
