variable "name" {
  description = "Name of the PostgresCluster (DNS-1123 label, at most 40 characters)."
  type        = string
}

variable "namespace" {
  description = "Namespace of the cluster object; created when create_namespace is true."
  type        = string
  default     = "databases"
}

variable "create_namespace" {
  description = "Create var.namespace."
  type        = bool
  default     = true
}

variable "install_crd" {
  description = "Install the PostgresCluster CustomResourceDefinition (once per Kubernetes cluster)."
  type        = bool
  default     = true
}

variable "install_controller" {
  description = "Install pgcluster-controller from kubernetes/controller (once per Kubernetes cluster)."
  type        = bool
  default     = true
}

variable "instances" {
  description = "PostgreSQL instances: one primary plus instances - 1 streaming replicas (1 to 9)."
  type        = number
  default     = 2
}

variable "postgres_version" {
  description = "PostgreSQL major version (15, 16 or 17)."
  type        = number
  default     = 17
}

variable "postgres_image" {
  description = "Instance image (PostgreSQL + pgcluster agent); null: the default for postgres_version, ghcr.io/pgcluster/postgres:<major> (images.env). Set it when the images are in your own registry."
  type        = string
  default     = null
}

variable "controller_image" {
  description = "Controller image (install_controller); as in images.env unless your images are in your own registry."
  type        = string
  default     = "ghcr.io/pgcluster/pgcluster-controller:0.1.0"
}

variable "storage_size" {
  description = "Volume size per instance, as a Kubernetes quantity."
  type        = string
  default     = "10Gi"
}

variable "storage_class" {
  description = "StorageClass of the volumes (K3s: local-path)."
  type        = string
  default     = "local-path"
}

variable "replication_mode" {
  description = "async or sync (sync: no acknowledged write is lost on failover)."
  type        = string
  default     = "async"
  validation {
    condition     = contains(["async", "sync"], var.replication_mode)
    error_message = "replication_mode must be \"async\" or \"sync\"."
  }
}

variable "load_balancer" {
  description = "MetalLB LoadBalancer for the internal network: null for none, or its address, pool, exposed endpoint (rw|ro) and the pool's ranges as CIDRs."
  type = object({
    address        = optional(string)
    pool           = optional(string)
    endpoint       = optional(string, "rw")
    allowed_ranges = optional(list(string), [])
  })
  default = null
}

variable "databases" {
  description = "Application databases: name and owning role."
  type        = list(object({ name = string, owner = string }))
  default     = []
}

variable "roles" {
  description = "Application roles with grants on databases they do not own."
  type = list(object({
    name   = string
    grants = optional(list(object({ database = string, privileges = optional(string, "readOnly") })), [])
  }))
  default = []
}

variable "access" {
  description = "Access rules as in spec.access (name, from {namespaces, podLabels, cidrs}, endpoints, databases, roles)."
  type        = any
  default     = []
}

variable "monitoring" {
  description = "Render the ServiceMonitor, PrometheusRule and Grafana dashboard."
  type        = bool
  default     = false
}

variable "spec_overrides" {
  description = "Any further spec fields, merged over the ones built from the variables above."
  type        = any
  default     = {}
}
