"""A real moto server on loopback, reached only through standard AWS settings."""

from __future__ import annotations

import contextlib
import os
import urllib.request
from collections.abc import Iterator

from moto.server import ThreadedMotoServer

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """Start ``ThreadedMotoServer(port=0)``; yield its URL; stop it afterwards.

    moto's DynamoDB is patched first with the incremental-export emulation
    (:mod:`tests.support.moto_incremental`; moto 5.2 has none).
    """
    from tests.support.moto_incremental import install

    install()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@contextlib.contextmanager
def aws_environment(endpoint: str) -> Iterator[None]:
    """Point the standard AWS variables at ``endpoint`` for the block."""
    wanted = {**AWS_ENV, "AWS_ENDPOINT_URL": endpoint}
    saved = {k: os.environ.get(k) for k in [*wanted, "AWS_PROFILE"]}
    os.environ.update(wanted)
    os.environ.pop("AWS_PROFILE", None)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def reset_moto(endpoint: str) -> None:
    """Forget every table, bucket and export (moto's own reset API); the
    emulated clock goes back to the real time."""
    from tests.support.moto_incremental import CLOCK

    CLOCK.reset()
    req = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        resp.read()
