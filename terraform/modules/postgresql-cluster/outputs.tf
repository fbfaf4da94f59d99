output "rw_endpoint" {
  description = "In-cluster read-write endpoint (the primary)."
  value       = "${var.name}-rw.${var.namespace}.svc:5432"
}

output "ro_endpoint" {
  description = "In-cluster read-only endpoint (the replicas)."
  value       = "${var.name}-ro.${var.namespace}.svc:5432"
}

output "load_balancer_address" {
  description = "The MetalLB address for the internal network (null without a LoadBalancer or without a fixed address)."
  value       = var.load_balancer == null ? null : var.load_balancer.address
}

output "superuser_secret" {
  description = "Secret holding the superuser's credentials."
  value       = "${var.name}-superuser"
}

output "role_secrets" {
  description = "Secret of each application role (keys username, password, host, port)."
  value       = { for r in var.roles : r.name => "${var.name}-role-${r.name}" }
}
