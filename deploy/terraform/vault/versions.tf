terraform {
  # optional() object attributes and lifecycle preconditions need 1.3; check blocks 1.5.
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # logging_config on aws_lambda_function needs 5.32 (make deploy-lint checks the
      # module against the schemas of 5.32.0 and of the newest 6.x it pins).
      version = ">= 5.32.0, < 7.0.0"
    }
  }
}
