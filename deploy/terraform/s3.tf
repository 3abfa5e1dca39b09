# The backup bucket: created here (create_bucket = true) or an existing one.

resource "aws_s3_bucket" "backups" {
  count = var.create_bucket ? 1 : 0
  #checkov:skip=CKV_AWS_144:Cross-region replication needs a second bucket and region chosen by the team; the backups are themselves the copy of the tables.
  #checkov:skip=CKV2_AWS_62:Nothing reacts to new objects; the state machines drive every step.
  # Access logging: aws_s3_bucket_logging.backups when access_log_bucket is set.
  # Encryption: SSE-KMS with kms_key_arn when set, else SSE-S3 (AES256).

  bucket = var.bucket_name
  tags   = local.tags

  lifecycle {
    # A destroy must never take the backups with it.
    prevent_destroy = true
  }
}

resource "aws_s3_bucket_ownership_controls" "backups" {
  count  = var.create_bucket ? 1 : 0
  bucket = aws_s3_bucket.backups[0].id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "backups" {
  count  = var.create_bucket ? 1 : 0
  bucket = aws_s3_bucket.backups[0].id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "backups" {
  count  = var.create_bucket ? 1 : 0
  bucket = aws_s3_bucket.backups[0].id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "backups" {
  count  = var.create_bucket ? 1 : 0
  bucket = aws_s3_bucket.backups[0].id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = var.kms_key_arn == null ? "AES256" : "aws:kms"
      kms_master_key_id = var.kms_key_arn
    }
    bucket_key_enabled = var.kms_key_arn != null
  }
}

resource "aws_s3_bucket_logging" "backups" {
  count  = var.create_bucket && var.access_log_bucket != null ? 1 : 0
  bucket = aws_s3_bucket.backups[0].id

  target_bucket = var.access_log_bucket
  target_prefix = "s3/${var.bucket_name}/"
}

# The lifecycle rule sits on the prefix the backups are really written to (the system
# this replaces had one on a prefix nothing was written to, so nothing ever expired).
# Restore checkpoints and dead letters live below it too (<prefix>/_restore/), and so
# do the incremental chains (<prefix>/incremental/): one age rule for all keeps every
# window at least as long as the full backup it builds on, since it is written after it.
resource "aws_s3_bucket_lifecycle_configuration" "backups" {
  count  = var.create_bucket || var.manage_existing_bucket_lifecycle ? 1 : 0
  bucket = var.create_bucket ? aws_s3_bucket.backups[0].id : var.bucket_name

  rule {
    id     = "expire-backups"
    status = "Enabled"

    filter {
      prefix = "${var.exports_prefix}/"
    }

    expiration {
      days = var.backup_retention_days
    }

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_retention_days
    }
  }

  rule {
    # Parts of uploads that never completed (a cut-off export or upload) cost money
    # and can never be read. A week is longer than any export runs.
    id     = "abort-incomplete-uploads"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.backups]
}

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
}

resource "aws_s3_bucket_policy" "backups" {
  count  = var.create_bucket ? 1 : 0
  bucket = aws_s3_bucket.backups[0].id
  policy = data.aws_iam_policy_document.bucket.json

  depends_on = [aws_s3_bucket_public_access_block.backups]
}
