output "vms" {
  description = "Per VM, in order (VM 1 runs the registry): index, runs_registry, swarm_role (manager, worker, or null with docker), advertise_ip, private_ip, node_names, node_ports (both empty with swarm, where the launcher names and places the nodes), images, docker_commands (the container-starting lines, which startup_script holds between the '# >>> hit6-mesh containers >>>' and '# <<< hit6-mesh containers <<<' markers: with swarm, VM 1's launcher line and nothing on the workers) and startup_script."
  value = [
    for i, vm in local.vms : merge(vm, { startup_script = local.startup_scripts[i] })
  ]
  # They hold the join token.
  sensitive = true
}

output "startup_scripts" {
  description = "The startup script of each VM, in order: metadata startup-script on GCP, user_data on AWS."
  value       = local.startup_scripts
  sensitive   = true
}

output "registry_port" {
  description = "Host port of the registry on VM 1 (of registry-1, with replicas)."
  value       = var.registry_port
}

output "registry_ports" {
  description = "Host ports of the registry replicas, registry-i on registry_ports[i-1] of the VM the launcher puts it on (VM 1 for registry-1): registry_port alone without replicas."
  value       = local.registry_ports
}

output "node_ports" {
  description = "Host ports of the nodes, the same on every VM: node i is published on node_ports[i-1], which is also its PUERTO_EXT."
  value       = local.node_ports
}

output "node_port_range" {
  description = "The node port range as numbers, for firewall rules that take a from and a to port."
  value       = { from = local.port_from, to = local.port_to }
}

output "firewall_ports" {
  description = "TCP ports for the cloud firewall, in the form firewall rules take: the registry ports and the whole node range."
  value       = concat([for p in local.registry_ports : tostring(p)], [local.port_from == local.port_to ? tostring(local.port_from) : var.node_port_range])
}

output "metrics_port" {
  description = "Host port of the registry's HTTP listener (/metrics, /health, the status page) on VM 1, or null: for the cloud firewall to open to the operators' addresses only."
  value       = var.metrics_port
}

output "swarm_ports" {
  description = "With orchestrator = \"swarm\", what the cloud firewall must also open between the VMs (and only between them): a list of { protocol, port, purpose }. Empty with docker."
  value       = local.swarm_ports
}

output "orchestrator" {
  description = "docker or swarm, as given."
  value       = var.orchestrator
}

output "launcher_command" {
  description = "With orchestrator = \"swarm\", the line of VM 1's script that deploys the mesh with the launcher, once every VM is in the swarm. Null with docker."
  value       = local.launcher_command
}

output "swarm_token_script" {
  description = "With orchestrator = \"swarm\" and join_token_secret.swarm_token_name, the script the startup script installs as /usr/local/bin/hit6-swarm-token: VM 1 puts the worker token, the others get it. Null otherwise. It holds the secret's name, not the token."
  value       = local.swarm_token_script
}

output "join_token_script" {
  description = "With join_token_secret, the script the startup script installs as /usr/local/bin/hit6-join-token: it fetches the join token and writes the containers' env file. Null otherwise. It holds the secret's name, not the token."
  value       = local.join_token_script
}

output "status_script" {
  description = "The script the startup script installs as /usr/local/bin/hit6-mesh-status: greetings sent and received per node on the VM."
  value       = local.status_script
}

output "mesh_command" {
  description = "What to run on a VM (e.g. over ssh, with sudo) to see its part of the mesh."
  value       = local.mesh_command
}

output "registry_address" {
  description = "Where the registry listens: registry_host and the registry port."
  value       = "${var.registry_host}:${var.registry_port}"
}

output "vm_ips" {
  description = "Public ip of each VM, VM 1 first (advertise_ips; empty when the VMs find theirs with advertise_ip_command)."
  value       = var.advertise_ips
}

output "node_endpoints" {
  description = "Every node's advertised address (public ip:PUERTO_EXT), VM by VM; empty when the ips come from advertise_ip_command, and with swarm, where the launcher picks each node's host and port (launcher -p PROJECT ps on VM 1 lists them)."
  value       = local.swarm ? [] : flatten([for ip in var.advertise_ips : [for port in local.node_ports : "${ip}:${port}"]])
}

output "ssh_mesh_command" {
  description = "Shows the greetings of every node, VM by VM, over ssh as ssh_user; the mesh is complete when they add up to expected_greetings. Null without ssh_user or advertise_ips."
  value = (var.ssh_user == null || length(var.advertise_ips) == 0 ? null :
  "for ip in ${join(" ", var.advertise_ips)}; do ssh ${var.ssh_user}@$ip sudo ${local.mesh_command}; done")
}

output "expected_greetings" {
  description = "Greetings received over all nodes once every pair has greeted: n(n-1)/2 for n nodes."
  value       = local.expected_greetings
}

output "summary" {
  description = "One line on what the VMs run."
  value = local.swarm ? format(
    "%d VM%s in a Docker swarm, VM 1 its manager: the launcher runs the registry on port %d and %d nodes on ports %s across the VMs; the mesh is complete at %d greetings.",
    var.node_vms, var.node_vms == 1 ? "" : "s", var.registry_port, local.node_count, var.node_port_range, local.expected_greetings,
    ) : format(
    "%d VM%s: VM 1 runs the registry on port %d; each VM runs %d node%s on ports %s (%d nodes in all); the mesh is complete at %d greetings.",
    var.node_vms, var.node_vms == 1 ? "" : "s", var.registry_port, var.nodes_per_vm, var.nodes_per_vm == 1 ? "" : "s",
    var.nodes_per_vm == 1 ? tostring(local.port_from) : "${local.port_from}-${local.port_from + var.nodes_per_vm - 1}",
    local.node_count, local.expected_greetings,
  )
}
