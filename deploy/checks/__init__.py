"""Offline checks of the deployment (``make deploy-lint``): the Terraform module against
the AWS provider's schema, the IAM policies against AWS's service authorization data,
and the roles against the AWS operations the code calls."""
