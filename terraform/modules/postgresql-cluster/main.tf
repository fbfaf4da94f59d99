locals {
  repo_root = "${path.module}/../../.."

  # Controller manifests as ArgoCD would sync them (the kustomization file is
  # kustomize's, not an object).
  controller_files = var.install_controller ? sort(tolist(setsubtract(
    fileset("${local.repo_root}/kubernetes/controller", "*.yaml"),
    ["kustomization.yaml", "crd.yaml"],
  ))) : []

  load_balancer = var.load_balancer == null ? {} : {
    loadBalancer = merge(
      { enabled = true, endpoint = var.load_balancer.endpoint, allowedRanges = var.load_balancer.allowed_ranges },
      var.load_balancer.address == null ? {} : { address = var.load_balancer.address },
      var.load_balancer.pool == null ? {} : { pool = var.load_balancer.pool },
    )
  }

  spec = merge({
    instances   = var.instances
    postgres    = merge({ version = var.postgres_version }, var.postgres_image == null ? {} : { image = var.postgres_image })
    storage     = { size = var.storage_size, storageClass = var.storage_class }
    replication = { mode = var.replication_mode }
    services    = local.load_balancer
    databases   = var.databases
    roles       = var.roles
    access      = var.access
    monitoring  = { enabled = var.monitoring }
  }, var.spec_overrides)
}

resource "kubectl_manifest" "crd" {
  count             = var.install_crd ? 1 : 0
  yaml_body         = file("${local.repo_root}/kubernetes/crd.yaml")
  server_side_apply = true
  wait              = true
}

data "kubectl_file_documents" "controller" {
  for_each = toset(local.controller_files)
  content  = file("${local.repo_root}/kubernetes/controller/${each.value}")
}

resource "kubectl_manifest" "controller" {
  for_each = merge([
    for f, docs in data.kubectl_file_documents.controller : docs.manifests
  ]...)
  # The Deployment's only `image:` line takes var.controller_image.
  yaml_body         = replace(each.value, "/(?m)^(\\s+image:) .*$/", "$1 ${var.controller_image}")
  server_side_apply = true
  depends_on        = [kubectl_manifest.crd]
}

resource "kubectl_manifest" "namespace" {
  count = var.create_namespace ? 1 : 0
  yaml_body = yamlencode({
    apiVersion = "v1"
    kind       = "Namespace"
    metadata   = { name = var.namespace }
  })
}

resource "kubectl_manifest" "cluster" {
  yaml_body = yamlencode({
    apiVersion = "pgcluster.dev/v1alpha1"
    kind       = "PostgresCluster"
    metadata   = { name = var.name, namespace = var.namespace }
    spec       = local.spec
  })
  server_side_apply = true
  # The controller owns status; wait until it reports the cluster ready.
  wait_for {
    field {
      key   = "status.phase"
      value = "Healthy"
    }
  }
  depends_on = [kubectl_manifest.crd, kubectl_manifest.controller, kubectl_manifest.namespace]
}
