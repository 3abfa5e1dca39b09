"""Verified copies of final backups in a vault bucket under S3 Object Lock.

Once a backup date is final (``manifest.json`` exists), :func:`copy_to_vault`
copies every object of that date (data files, AWS's manifests and ``.md5``
sidecars, our manifest) to ``VAULT_BUCKET`` under the same keys, server-side
(``CopyObject``; ``UploadPartCopy`` above 5 GB), each with Object Lock retention
and a checksum header. Each copy is checked against the MD5 the source is known
to have (AWS's ``md5Checksum`` / our manifest for data files, else the source's
own MD5): from the ETag where S3 gives the MD5 that way (single-part, not
SSE-KMS), else by reading the copy. The vault manifest is written last::

    <prefix>/<date>/vault-manifest.json    (vault: every object, checksum, retention)
    <prefix>/<date>/_vault/state.json      (primary: objects verified so far, to resume)

After each date, :func:`copy_windows_to_vault` copies the point-in-time chains'
verified windows and their records the same way (:mod:`.copy_windows`).
:func:`copy_date_and_windows` (:mod:`.run`) is the two in order, as the vault
function and ``ddb-backup vault-copy`` run them.

A key already in the vault with the right MD5 is skipped; a different object
under a locked key is a conflict, reported and never overwritten.

One module per job: :mod:`.config` (settings), :mod:`.manifest` (the vault
manifest and the resume state), :mod:`.copy_object` (one object, copied and
proven), :mod:`.copy_date` (one date, resumable), :mod:`.copy_windows` (the
point-in-time windows), :mod:`.verify` (a copy checked against its manifest),
:mod:`.verify_windows` (the windows' copies, per table), :mod:`.status` (every
date of the primary and the vault), :mod:`.run` (a date, then the windows).
"""

from ddb_backup.vault.config import VaultConfig
from ddb_backup.vault.copy_date import VaultFailure, VaultResult, copy_to_vault
from ddb_backup.vault.copy_object import MULTIPART_THRESHOLD
from ddb_backup.vault.copy_windows import WindowsResult, copy_windows_to_vault
from ddb_backup.vault.manifest import (
    VaultManifest,
    VaultObject,
    vault_manifest_key,
    vault_state_key,
)
from ddb_backup.vault.run import VaultRun, copy_date_and_windows
from ddb_backup.vault.status import latest_final_date, vault_status
from ddb_backup.vault.verify import VaultDateStatus, verify_vault_copy
from ddb_backup.vault.verify_windows import VaultWindowsStatus, verify_vault_windows

__all__ = [
    "MULTIPART_THRESHOLD",
    "VaultConfig",
    "VaultDateStatus",
    "VaultFailure",
    "VaultManifest",
    "VaultObject",
    "VaultResult",
    "VaultRun",
    "VaultWindowsStatus",
    "WindowsResult",
    "copy_date_and_windows",
    "copy_to_vault",
    "copy_windows_to_vault",
    "latest_final_date",
    "vault_manifest_key",
    "vault_state_key",
    "vault_status",
    "verify_vault_copy",
    "verify_vault_windows",
]
