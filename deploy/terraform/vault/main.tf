# The vault: an Object Lock bucket in a second account that ddb-backup's vault function
# (in the backup account) copies every final backup to. Apply it with the vault
# account's credentials; see docs/vault.md.
#
# The backup account's roles may write, read and lock copies; nobody may delete an
# object version or bypass its retention through this bucket's policy. Copies expire
# by lifecycle only, after their retention.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account_id  = data.aws_caller_identity.current.account_id
  partition   = data.aws_partition.current.partition
  region      = data.aws_region.current.id
  bucket_arn  = "arn:${local.partition}:s3:::${var.bucket_name}"
  objects_arn = "${local.bucket_arn}/${var.exports_prefix}/*"
  tags        = merge({ "project" = "ddb-backup", "role" = "vault" }, var.tags)
}

# ---------------------------------------------------------------------------
# Key: this account administers it; the backup roles use it through S3 only.
# ---------------------------------------------------------------------------

data "aws_iam_policy_document" "key" {
  #checkov:skip=CKV_AWS_109:A key policy's resource is the key itself ("*"); administration stays with this account.
  #checkov:skip=CKV_AWS_111:A key policy's resource is the key itself ("*"); writes are the account's own administration.
  #checkov:skip=CKV_AWS_356:A key policy's resource is always "*" (the key it is attached to).
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  statement {
    sid       = "BackupRolesThroughS3"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt", "kms:DescribeKey"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = var.backup_role_arns
    }

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${local.region}.amazonaws.com"]
    }
  }
}

resource "aws_kms_key" "vault" {
  description             = "ddb-backup vault ${var.bucket_name}"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.key.json
  tags                    = local.tags
}

# ---------------------------------------------------------------------------
# Bucket: Object Lock (set at creation, never removable), versioned, private, KMS.
# ---------------------------------------------------------------------------

resource "aws_s3_bucket" "vault" {
  #checkov:skip=CKV_AWS_144:The vault is itself the off-account copy of the backups; a replica in a third region is the team's choice.
  #checkov:skip=CKV2_AWS_62:Nothing reacts to new objects; the backup account's function drives every copy.
  bucket              = var.bucket_name
  object_lock_enabled = true
  tags                = local.tags
}

resource "aws_s3_bucket_versioning" "vault" {
  bucket = aws_s3_bucket.vault.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_object_lock_configuration" "vault" {
  bucket = aws_s3_bucket.vault.id

  rule {
    default_retention {
      mode = var.lock_mode
      days = var.retention_days
    }
  }

  depends_on = [aws_s3_bucket_versioning.vault]
}

resource "aws_s3_bucket_ownership_controls" "vault" {
  bucket = aws_s3_bucket.vault.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "vault" {
  bucket                  = aws_s3_bucket.vault.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_server_side_encryption_configuration" "vault" {
  bucket = aws_s3_bucket.vault.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.vault.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_logging" "vault" {
  count         = var.access_log_bucket == null ? 0 : 1
  bucket        = aws_s3_bucket.vault.id
  target_bucket = var.access_log_bucket
  target_prefix = "s3-access/${var.bucket_name}/"
}

# A copy becomes noncurrent after its retention (plus a grace period) and is then
# removed; S3 refuses to remove a version that is still locked, whatever this says.
# (One expiration rule per prefix: S3 refuses overlapping rules of the same action.)
resource "aws_s3_bucket_lifecycle_configuration" "vault" {
  bucket = aws_s3_bucket.vault.id

  rule {
    id     = "expire-after-retention"
    status = "Enabled"

    filter {
      prefix = "${var.exports_prefix}/"
    }

    expiration {
      days = var.retention_days + var.expire_after_retention_days
    }

    noncurrent_version_expiration {
      noncurrent_days = var.retention_days + var.expire_after_retention_days
    }
  }

  rule {
    # Parts of copies that never completed can never be read (nor locked).
    id     = "abort-incomplete-uploads"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.vault]
}

# ---------------------------------------------------------------------------
# Policy: the backup roles write, read and lock below the prefix; nobody deletes a
# version or bypasses a retention through this bucket (lifecycle is not a request).
# ---------------------------------------------------------------------------

data "aws_iam_policy_document" "bucket" {
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      local.bucket_arn,
      "${local.bucket_arn}/*",
    ]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  statement {
    sid = "DenyDeletesAndRetentionBypass"
    # Governs everyone, this account included: removing it means changing this
    # policy, which CloudTrail records (and COMPLIANCE mode makes pointless).
    effect = "Deny"
    actions = [
      "s3:DeleteObject",
      "s3:DeleteObjectVersion",
      "s3:BypassGovernanceRetention",
    ]
    resources = ["${local.bucket_arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }
  }

  statement {
    sid       = "BackupRolesList"
    actions   = ["s3:ListBucket"]
    resources = [local.bucket_arn]

    principals {
      type        = "AWS"
      identifiers = var.backup_role_arns
    }

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = [var.exports_prefix, "${var.exports_prefix}/*"]
    }
  }

  statement {
    sid = "BackupRolesCopy"
    actions = [
      "s3:PutObject",
      "s3:GetObject",
      "s3:GetObjectVersion",
      "s3:GetObjectRetention",
      "s3:PutObjectRetention",
      "s3:AbortMultipartUpload",
    ]
    resources = [local.objects_arn]

    principals {
      type        = "AWS"
      identifiers = var.backup_role_arns
    }
  }
}

resource "aws_s3_bucket_policy" "vault" {
  bucket = aws_s3_bucket.vault.id
  policy = data.aws_iam_policy_document.bucket.json

  depends_on = [aws_s3_bucket_public_access_block.vault]
}
