terraform {
  required_version = ">= 1.6" # OpenTofu 1.6+ or Terraform 1.6+

  required_providers {
    # kubectl applies CRDs and custom resources in one plan (the hashicorp
    # kubernetes provider's kubernetes_manifest needs the CRD to exist at plan time).
    kubectl = {
      source  = "alekc/kubectl"
      version = ">= 2.0"
    }
  }
}
