output "registry_address" {
  description = "Where the registry listens: VM 1's public ip and the registry port."
  value       = "${google_compute_address.vm[0].address}:${module.cluster.registry_port}"
}

output "node_endpoints" {
  description = "Every node's advertised address (public ip:PUERTO_EXT), VM by VM."
  value       = flatten([for address in google_compute_address.vm : [for port in module.cluster.node_ports : "${address.address}:${port}"]])
}

output "vm_ips" {
  description = "Public ip of each VM, VM 1 first."
  value       = google_compute_address.vm[*].address
}

output "mesh_command" {
  description = "Shows the greetings of every node, VM by VM; the mesh is complete when they add up to expected_greetings."
  value       = "for ip in ${join(" ", google_compute_address.vm[*].address)}; do ssh ${var.ssh_user}@$ip sudo ${module.cluster.mesh_command}; done"
}

output "expected_greetings" {
  description = "Greetings received over all nodes once every pair has greeted."
  value       = module.cluster.expected_greetings
}

output "summary" {
  description = "What the VMs run."
  value       = module.cluster.summary
}
