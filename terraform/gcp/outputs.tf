output "registry_address" {
  description = "Where the registry listens: VM 1's public ip and the registry port."
  value       = module.cluster.registry_address
}

output "node_endpoints" {
  description = "Every node's advertised address (public ip:PUERTO_EXT), VM by VM."
  value       = module.cluster.node_endpoints
}

output "vm_ips" {
  description = "Public ip of each VM, VM 1 first."
  value       = module.cluster.vm_ips
}

output "mesh_command" {
  description = "Shows the greetings of every node, VM by VM; the mesh is complete when they add up to expected_greetings."
  value       = module.cluster.ssh_mesh_command
}

output "expected_greetings" {
  description = "Greetings received over all nodes once every pair has greeted."
  value       = module.cluster.expected_greetings
}

output "summary" {
  description = "What the VMs run."
  value       = module.cluster.summary
}
