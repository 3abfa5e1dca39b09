"""Dead letters of a window: failed puts *and deletes*, in a form that restores.

:class:`ddb_backup.writer.DeadLetterSink` keeps failed puts as full-export
lines (``{"Item": ...}``) and drops deletes. A window's failures are kept
instead as an incremental export folder in AWS's layout, ``NEW_IMAGE`` view::

    <root>/AWSDynamoDB/dead-letters/manifest-summary.json (+ .md5)
    <root>/AWSDynamoDB/dead-letters/manifest-files.json   (+ .md5)
    <root>/AWSDynamoDB/data/<round>-NNNNN.json.gz          change records

a failed put is ``Keys`` + ``NewImage``, a failed delete ``Keys`` alone, so
``ddb-backup restore-export s3://BUCKET/<root>/AWSDynamoDB/dead-letters/
--table T`` verifies and applies them later like any window.

Each line's ``WriteTimestampMicros`` is the window's start plus the line's
sequence number across rounds: inside the window, and a key dead-lettered
again in a later round (the same request, re-sent after a resume) carries the
greater stamp, so it wins instead of tying.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import orjson

from ddb_backup.chain import time_stamp
from ddb_backup.changes import OutputView
from ddb_backup.incremental import (
    INCREMENTAL_SUMMARY_VERSION,
    IncrementalSummary,
    VerifiedWindow,
    micros,
)
from ddb_backup.items import Request, wire_request
from ddb_backup.manifest import DataFile
from ddb_backup.restore.writer import DeadLetterSink
from ddb_backup.storage import Storage, content_md5

__all__ = ["DEAD_LETTER_EXPORT_ID", "ChangeDeadLetterSink", "window_dead_letter_root"]

#: The export id of a dead-letter folder (its manifests' folder name).
DEAD_LETTER_EXPORT_ID = "dead-letters"


def window_dead_letter_root(table_folder: str, window: IncrementalSummary) -> str:
    """The ``<root>`` of one window's dead letters under a table's dead-letter
    folder: one per window, so each is an export of its own window."""
    stamps = f"{time_stamp(window.export_from_time)}_{time_stamp(window.export_to_time)}"
    return f"{table_folder}/windows/{stamps}"


class ChangeDeadLetterSink(DeadLetterSink):
    """A :class:`DeadLetterSink` for a window's writes (give it to the BatchWriter).

    Reuses the base's buffering and part uploads (``_upload`` writes parts to
    ``<folder>/data/``, here the shared ``AWSDynamoDB/data/``); only the line
    encoding (:meth:`_lines`) and the manifests (:meth:`_write_manifests`)
    differ. ``files``: the parts of earlier rounds.
    """

    def __init__(
        self,
        storage: Storage,
        root: str,
        summary: IncrementalSummary,
        *,
        key_names: tuple[str, ...],
        part_prefix: str = "part",
        files: list[DataFile] | None = None,
    ) -> None:
        super().__init__(
            storage, f"{root.rstrip('/')}/AWSDynamoDB", part_prefix=part_prefix, files=files
        )
        self.export_folder = f"{self.folder}/{DEAD_LETTER_EXPORT_ID}"
        self._window = summary
        self._key_names = key_names
        self._start = micros(summary.export_from_time)
        self.failed_puts = 0
        self.failed_deletes = 0

    @classmethod
    def for_window(
        cls,
        storage: Storage,
        table_folder: str,
        window: VerifiedWindow,
        *,
        key_names: tuple[str, ...],
        part_prefix: str = "part",
        files: list[DataFile] | None = None,
    ) -> ChangeDeadLetterSink:
        """The sink of ``window``'s failed writes under a table's dead-letter folder.

        The differences between callers are deliberate: ``restore-export``
        applies a chain in one call with no checkpoint (the defaults: one
        series of parts, none before); a restore run resumes over rounds, so
        its parts are named per round as the full backup's are (a part uploaded
        by a round cut off before its mark was saved never shares a key with
        the next round's) and ``files`` carries the earlier rounds' parts into
        the manifests.
        """
        return cls(
            storage,
            window_dead_letter_root(table_folder, window.summary),
            window.summary,
            key_names=key_names,
            part_prefix=part_prefix,
            files=files,
        )

    def _lines(self, requests: Sequence[Request], seq: int) -> list[bytes]:
        lines = []
        for offset, request in enumerate(map(wire_request, requests)):
            put = request.get("PutRequest")
            if put is not None:
                keys = {n: put["Item"][n] for n in self._key_names}
                self.failed_puts += 1
            else:
                keys = request["DeleteRequest"]["Key"]
                self.failed_deletes += 1
            doc = {
                "Metadata": {"WriteTimestampMicros": {"N": str(self._start + seq + offset)}},
                "Keys": keys,
                **({"NewImage": put["Item"]} if put is not None else {}),
            }
            lines.append(orjson.dumps(doc))
        return lines

    async def _write_manifests(self) -> None:
        """Both manifests (and their ``.md5``) in the export folder."""
        w = self._window
        summary = {
            "version": INCREMENTAL_SUMMARY_VERSION,
            "exportType": "INCREMENTAL_EXPORT",
            "exportArn": f"{w.export_arn}/{DEAD_LETTER_EXPORT_ID}",
            "tableArn": w.table_arn,
            "tableId": w.table_id,
            "exportFromTime": w.export_from_time.astimezone(dt.UTC).isoformat(),
            "exportToTime": w.export_to_time.astimezone(dt.UTC).isoformat(),
            "itemCount": sum(f.item_count for f in self.files),
            "outputFormat": "DYNAMODB_JSON",
            "outputView": OutputView.NEW_IMAGE.value,
        }
        for name, body in (
            ("manifest-files", self._files_manifest()),
            ("manifest-summary", orjson.dumps(summary)),
        ):
            await self._storage.put_bytes(f"{self.export_folder}/{name}.json", body)
            await self._storage.put_bytes(
                f"{self.export_folder}/{name}.md5", content_md5(body).encode()
            )
