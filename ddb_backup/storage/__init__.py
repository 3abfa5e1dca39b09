"""Where backups live: S3, or a local copy made by ``ddb-backup download``.

Both stores speak the same small protocol, so verification and restore run
unchanged on either. S3 bodies are read in chunks; a body cut off part-way is
resumed with a byte-range request from the last byte received, so a dropped
connection never costs (or duplicates) an item.

Every read of an S3 object is pinned: range requests that resume a body are
sent with the first answer's ``VersionId`` (versioned bucket) or ``If-Match``
on its ETag, and a caller may pin the first request too (:class:`ObjectPin`,
recorded at verification), so bytes of a replaced object are never mixed in:
S3 answers 412 / ``NoSuchVersion``, raised as :class:`DataFileChangedError`.
:class:`PinnedReads` remembers the first pin seen per key for a whole run.

One module per store: :mod:`.protocol` (the protocol, pins, ``content_md5``),
:mod:`.s3` (:class:`S3Storage`), :mod:`.local` (:class:`LocalStorage`),
:mod:`.pinned` (:class:`PinnedReads`).
"""

from ddb_backup.storage.local import LocalStorage
from ddb_backup.storage.pinned import PinnedReads
from ddb_backup.storage.protocol import CHUNK_SIZE, ObjectInfo, ObjectPin, Storage, content_md5
from ddb_backup.storage.s3 import S3Storage

__all__ = [
    "CHUNK_SIZE",
    "LocalStorage",
    "ObjectInfo",
    "ObjectPin",
    "PinnedReads",
    "S3Storage",
    "Storage",
    "content_md5",
]
