"""The restore's writes over reqwest (``restore/transport.py``) and the event loop
they run on (``concurrency.run``): items land item for item, what reqwest cannot
honour falls back to aiohttp, and failures arrive as the botocore errors the
writer retries."""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ddb_backup import concurrency
from ddb_backup.aws import client_config, is_retryable
from ddb_backup.restore import restore_clients
from ddb_backup.restore.sender import _DirectSender
from ddb_backup.restore.transport import ReqwestPoster, _roots, reqwest_poster
from ddb_backup.restore.writer import BatchWriter, RetryPolicy, default_sender
from tests.support.data import create_table, scan_all

TABLE = "transport-target"
ITEMS = [{"pk": {"S": f"p{i}"}, "sk": {"S": "s"}, "n": {"N": str(i)}} for i in range(60)]


async def test_restore_clients_write_through_reqwest_item_for_item(moto: str) -> None:
    async with restore_clients(4) as clients:
        poster = clients.write_http
        assert isinstance(poster, ReqwestPoster)
        posted: list[str] = []
        post = poster.post

        async def counted(url: str, headers: Any, body: bytes) -> Any:
            posted.append(url)
            return await post(url, headers, body)

        poster.post = counted  # type: ignore[method-assign]
        sender = default_sender(clients.dynamodb, poster)
        assert isinstance(sender, _DirectSender)
        await create_table(clients.dynamodb, TABLE, pitr=False)
        async with BatchWriter(TABLE, sender, max_workers=4) as writer:
            for i in range(0, len(ITEMS), 25):
                await writer.submit([{"PutRequest": {"Item": it}} for it in ITEMS[i : i + 25]])
        assert writer.stats.written == len(ITEMS)
        assert writer.stats.failed == 0
        assert len(posted) == 3  # every batch of 25 went through reqwest

        def key(item: dict[str, Any]) -> str:
            return str(item["pk"]["S"])

        assert sorted(await scan_all(clients.dynamodb, TABLE), key=key) == sorted(ITEMS, key=key)


async def test_dynamodbs_refusals_through_reqwest_are_the_clients_modelled_errors(
    moto: str,
) -> None:
    """An answer with an error status is read from reqwest's headers and body into
    the ``ClientError`` botocore would raise, with its code and HTTP status."""
    async with restore_clients(2) as clients:
        sender = default_sender(clients.dynamodb, clients.write_http)
        with pytest.raises(clients.dynamodb.exceptions.ResourceNotFoundException) as missing:
            await sender("no-such-table", [{"PutRequest": {"Item": ITEMS[0]}}])
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert not is_retryable(missing.value)


async def test_a_proxy_or_a_client_certificate_keeps_the_clients_own_aiohttp_path(
    moto: str, tmp_path: Path
) -> None:
    cert, key = _self_signed("client")
    (tmp_path / "c.pem").write_bytes(cert)
    (tmp_path / "k.pem").write_bytes(key)
    proxy = "http://127.0.0.1:9"
    for settings in (
        AioConfig(proxies={"http": proxy, "https": proxy}),
        AioConfig(client_cert=(str(tmp_path / "c.pem"), str(tmp_path / "k.pem"))),
    ):
        config = client_config(8, 1).merge(settings)
        async with (
            get_session().create_client("dynamodb", config=config) as ddb,
            reqwest_poster(ddb) as poster,
        ):
            assert poster is None


async def test_without_pyreqwest_the_writes_take_aiohttps_path(
    moto: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A platform without its wheels: no poster, and the restore still writes."""
    monkeypatch.setitem(sys.modules, "pyreqwest.client", None)  # import raises ImportError
    async with restore_clients(2) as clients:
        assert clients.write_http is None
        await create_table(clients.dynamodb, TABLE, pitr=False)
        async with BatchWriter(TABLE, default_sender(clients.dynamodb), max_workers=2) as w:
            await w.submit([{"PutRequest": {"Item": it}} for it in ITEMS[:25]])
        assert w.stats.written == 25
        assert len(await scan_all(clients.dynamodb, TABLE)) == 25


async def test_a_ca_bundle_is_trusted_certificate_by_certificate(moto: str, tmp_path: Path) -> None:
    """Every certificate of the client's bundle is added (a bundle reqwest cannot
    read falls back to aiohttp's path with a warning, never fails the restore)."""
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(_self_signed("one")[0] + _self_signed("two")[0])
    broken = tmp_path / "broken.pem"
    broken.write_bytes(
        b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"
    )
    roots = _roots(str(bundle))
    assert [x509.load_pem_x509_certificate(r).subject.rfc4514_string() for r in roots] == [
        "CN=one",
        "CN=two",
    ]
    for path, works in ((bundle, True), (broken, False)):
        async with (
            get_session().create_client("dynamodb", verify=str(path)) as ddb,
            reqwest_poster(ddb) as poster,
        ):
            assert (poster is not None) is works


@pytest.fixture
async def silent_server() -> AsyncIterator[str]:
    """A server that accepts connections and never answers."""

    done = asyncio.Event()

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1 << 20)
        await done.wait()
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}/"
        done.set()


async def _closed_port() -> int:
    """A loopback port nothing listens on (connections are refused)."""
    closed = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port: int = closed.sockets[0].getsockname()[1]
    closed.close()
    await closed.wait_closed()
    return port


async def test_failures_are_the_botocore_errors_the_writer_retries(
    moto: str, silent_server: str
) -> None:
    """The client's timeouts are reqwest's: a server that never answers fails the
    call after the client's 0.3 s read timeout (not reqwest's own default), as a
    retryable botocore timeout; a refused connection as EndpointConnectionError."""
    config = client_config(4, 1).merge(AioConfig(connect_timeout=2, read_timeout=0.3))
    async with (
        get_session().create_client("dynamodb", config=config) as ddb,
        reqwest_poster(ddb) as poster,
    ):
        assert poster is not None
        with pytest.raises(EndpointConnectionError) as refused:
            await poster.post(f"http://127.0.0.1:{await _closed_port()}/", {}, b"{}")
        # reqwest may call a server that never answers a connect or a read timeout.
        with pytest.raises((ReadTimeoutError, ConnectTimeoutError)) as slow:
            await asyncio.wait_for(poster.post(silent_server, {}, b"{}"), timeout=10)
    assert is_retryable(refused.value)
    assert is_retryable(slow.value)


async def test_a_refused_connection_is_retried_then_counted_failed_never_written(
    moto: str,
) -> None:
    """An endpoint that refuses every connection: each batch is retried until the
    budget is spent and ends failed (counted), none is reported written."""
    port = await _closed_port()
    async with restore_clients(2) as clients:
        assert clients.write_http is not None

        class Elsewhere(ReqwestPoster):
            async def post(self, url: str, headers: Any, body: bytes) -> Any:
                return await super().post(f"http://127.0.0.1:{port}/", headers, body)

        sender = default_sender(clients.dynamodb, Elsewhere(clients.write_http._client))
        fast = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.002)
        async with BatchWriter(TABLE, sender, max_workers=2, retry=fast) as writer:
            await writer.submit([{"PutRequest": {"Item": ITEMS[0]}}])
    assert writer.stats.written == 0
    assert writer.stats.failed == 1
    assert writer.stats.error_codes == {"EndpointConnectionError": 3}


def test_commands_and_invocations_run_on_uvloop() -> None:
    import uvloop

    async def loop_type() -> type:
        return type(asyncio.get_running_loop())

    assert concurrency.run(loop_type()) is uvloop.Loop


def _self_signed(name: str) -> tuple[bytes, bytes]:
    """A self-signed certificate and its key, PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem_key = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), pem_key
