"""A DynamoDB endpoint that answers instantly, for benchmarks (run in its own process).

Speaks just enough HTTP/1.1 (keep-alive, Content-Length bodies) to answer
``BatchWriteItem`` with ``{"UnprocessedItems": {}}`` and ``DescribeTable``
with an ACTIVE table keyed ``pk``/``sk``. It counts the write requests it
received so a benchmark can check every item arrived, and answers
``GET /stats`` with those counts. It runs in a subprocess so its CPU is never
counted as the client's.

    python benchmarks/instant_dynamodb.py [--port 0]   # prints the port
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

import orjson

_BATCH_OK = b'{"UnprocessedItems":{}}'


def _describe(table: str) -> bytes:
    return orjson.dumps(
        {
            "Table": {
                "TableName": table,
                "TableStatus": "ACTIVE",
                "TableArn": f"arn:aws:dynamodb:us-east-1:123456789012:table/{table}",
                "KeySchema": [
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
                "AttributeDefinitions": [
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "sk", "AttributeType": "S"},
                ],
                "ItemCount": 0,
                "TableSizeBytes": 0,
                "BillingModeSummary": {"BillingMode": "PAY_PER_REQUEST"},
            }
        }
    )


class Stats:
    requests = 0
    write_requests = 0
    bytes_received = 0


class _Http(asyncio.Protocol):
    def __init__(self) -> None:
        self._buf = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buf += data
        while True:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self._buf[:end]).decode("latin-1")
            length = 0
            target = ""
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                lname = name.strip().lower()
                if lname == "content-length":
                    length = int(value)
                elif lname == "x-amz-target":
                    target = value.strip()
            if len(self._buf) < end + 4 + length:
                return
            body = bytes(self._buf[end + 4 : end + 4 + length])
            del self._buf[: end + 4 + length]
            self._respond(head.split(" ", 2)[1] if " " in head else "/", target, body)

    def _respond(self, path: str, target: str, body: bytes) -> None:
        status, payload = self.answer(path, target, body)
        assert self._transport is not None
        self._transport.write(
            f"HTTP/1.1 {status}\r\nContent-Type: application/x-amz-json-1.0\r\n"
            f"x-amzn-RequestId: bench\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )

    def answer(self, path: str, target: str, body: bytes) -> tuple[str, bytes]:
        """The status line and body for one request (a subclass may answer differently)."""
        Stats.requests += 1
        Stats.bytes_received += len(body)
        status = "200 OK"
        if target.endswith(".BatchWriteItem"):
            # Counting '"PutRequest"' is cheap and exact for bodies we did not parse.
            Stats.write_requests += body.count(b'"PutRequest"') + body.count(b'"DeleteRequest"')
            payload = _BATCH_OK
        elif target.endswith(".DescribeTable"):
            payload = _describe(orjson.loads(body)["TableName"])
        elif path == "/stats":
            payload = orjson.dumps(
                {
                    "requests": Stats.requests,
                    "write_requests": Stats.write_requests,
                    "bytes_received": Stats.bytes_received,
                }
            )
        else:
            status = "400 Bad Request"
            payload = orjson.dumps(
                {
                    "__type": "com.amazon.coral.validate#ValidationException",
                    "message": f"unsupported operation {target or path}",
                }
            )
        return status, payload


async def serve(port: int, exit_with_stdin: bool, protocol: type[_Http] = _Http) -> None:
    """Serve ``protocol`` on 127.0.0.1:``port`` (0: any), printing the port."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(protocol, "127.0.0.1", port, backlog=512)
    sock_port = server.sockets[0].getsockname()[1]
    sys.stdout.write(f"{sock_port}\n")
    sys.stdout.flush()
    async with server:
        if exit_with_stdin:
            # Started by a benchmark with a pipe on stdin: when that process
            # ends (however it ends) the pipe closes and this server goes too.
            reader = asyncio.StreamReader()
            await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
            serving = asyncio.ensure_future(server.serve_forever())
            await reader.read()
            serving.cancel()
            return
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--exit-with-stdin", action="store_true", help="stop when stdin closes")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port, args.exit_with_stdin))


if __name__ == "__main__":
    main()
