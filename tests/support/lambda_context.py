"""The part of the Lambda context object the handlers use."""

from __future__ import annotations

import time


class FakeContext:
    """``get_remaining_time_in_millis`` counting down from ``remaining_ms``."""

    function_name = "ddb-backup-test"
    aws_request_id = "00000000-0000-0000-0000-000000000000"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:ddb-backup-test"

    def __init__(self, remaining_ms: int) -> None:
        self._deadline = time.monotonic() + remaining_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))
