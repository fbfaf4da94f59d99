# The reference homelab (examples/homelab.yaml) through OpenTofu.
terraform {
  required_providers {
    kubectl = {
      source  = "alekc/kubectl"
      version = ">= 2.0"
    }
  }
}

provider "kubectl" {
  config_path = "~/.kube/config"
}

module "postgres" {
  source           = "../../modules/postgresql-cluster"
  name             = "main"
  namespace        = "databases"
  replication_mode = "sync"
  storage_size     = "20Gi"
  monitoring       = true
  load_balancer = {
    address        = "10.0.20.210"
    pool           = "cluster-vlan"
    allowed_ranges = ["10.0.20.200/29", "10.0.20.208/29", "10.0.20.216/30", "10.0.20.220/32"]
  }
  databases = [
    { name = "gitea", owner = "gitea" },
    { name = "nextcloud", owner = "nextcloud" },
  ]
  roles = [
    { name = "gitea" },
    { name = "nextcloud" },
    { name = "admin", grants = [
      { database = "gitea", privileges = "readWrite" },
      { database = "nextcloud", privileges = "readWrite" },
    ] },
  ]
  access = [
    { name = "gitea", from = { namespaces = ["apps"], podLabels = { "app.kubernetes.io/name" = "gitea" } },
    endpoints = ["rw", "ro"], databases = ["gitea"], roles = ["gitea"] },
    { name = "nextcloud", from = { namespaces = ["apps"], podLabels = { "app.kubernetes.io/name" = "nextcloud" } },
    endpoints = ["rw", "ro"], databases = ["nextcloud"], roles = ["nextcloud"] },
    { name = "admins", from = { cidrs = ["10.0.10.0/24"] },
    endpoints = ["loadBalancer"], databases = ["gitea", "nextcloud"], roles = ["admin"] },
  ]
}

output "rw_endpoint" { value = module.postgres.rw_endpoint }
output "load_balancer_address" { value = module.postgres.load_balancer_address }
