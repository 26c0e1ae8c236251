terraform {
  required_version = ">= 1.11" # ephemeral variables and write-only arguments

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 6.0, < 7.0" # value_wo
    }
  }
}

provider "aws" {
  region = var.region
}
