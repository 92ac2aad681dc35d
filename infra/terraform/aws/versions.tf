terraform {
  # templatefile(), lifecycle preconditions, aws_vpc_security_group_*_rule resources.
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.0"
    }
  }
}
