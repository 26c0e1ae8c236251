output "registry_address" {
  description = "Where the registry listens: VM 1's public ip and the registry port."
  value       = "${aws_eip.vm[0].public_ip}:${module.cluster.registry_port}"
}

output "node_endpoints" {
  description = "Every node's advertised address (public ip:PUERTO_EXT), VM by VM."
  value       = flatten([for eip in aws_eip.vm : [for port in module.cluster.node_ports : "${eip.public_ip}:${port}"]])
}

output "vm_ips" {
  description = "Public ip of each VM, VM 1 first."
  value       = aws_eip.vm[*].public_ip
}

output "mesh_command" {
  description = "Shows the greetings of every node, VM by VM; the mesh is complete when they add up to expected_greetings."
  value       = "for ip in ${join(" ", aws_eip.vm[*].public_ip)}; do ssh ${var.ssh_user}@$ip sudo ${module.cluster.mesh_command}; done"
}

output "expected_greetings" {
  description = "Greetings received over all nodes once every pair has greeted."
  value       = module.cluster.expected_greetings
}

output "summary" {
  description = "What the VMs run."
  value       = module.cluster.summary
}
