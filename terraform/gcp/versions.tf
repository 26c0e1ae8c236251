terraform {
  required_version = ">= 1.11" # ephemeral variables and write-only arguments

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 7.0, < 8.0" # secret_data_wo
    }
  }
}

provider "google" {
  project = var.gcp_project
  region  = var.region
  zone    = var.zone
}
