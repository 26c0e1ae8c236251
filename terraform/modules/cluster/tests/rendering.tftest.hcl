# What the module renders for the lab's layout: the registry and nodes on VM 1,
# nodes on VM 2, each node advertising its VM's public ip and its own port.
# Plan mode: the module has no provider and no resource, so every output is
# known at plan time and nothing is downloaded.

variables {
  registry_host = "203.0.113.10"
  node_vms      = 2
  nodes_per_vm  = 3
  advertise_ips = ["203.0.113.10", "203.0.113.11"]
}

run "two_vms_as_in_the_lab" {
  command = plan

  assert {
    condition     = length(output.vms) == 2 && length(output.startup_scripts) == 2
    error_message = "one VM per node_vms"
  }

  assert {
    condition     = output.vms[0].runs_registry && !output.vms[1].runs_registry
    error_message = "the registry runs on VM 1 only"
  }

  assert {
    condition     = output.node_ports == [8087, 8088, 8089] && output.vms[1].node_ports == [8087, 8088, 8089]
    error_message = "nodes take the first ports of the range, the same on every VM: ${jsonencode(output.node_ports)}"
  }

  assert {
    condition     = output.firewall_ports == ["8086", "8087-8095"]
    error_message = "the firewall opens the registry port and the whole node range: ${jsonencode(output.firewall_ports)}"
  }

  assert {
    condition     = length(output.vms[0].docker_commands) == 5 && length(output.vms[1].docker_commands) == 4
    error_message = "VM 1: network, registry and 3 nodes; VM 2: network and 3 nodes"
  }

  assert {
    condition = output.vms[0].docker_commands[1] == join(" ", [
      "docker container inspect hit6-registry >/dev/null 2>&1 ||",
      "docker run -d --name hit6-registry --network hit6 --restart unless-stopped",
      "--label io.hit6.project=hit6 --label io.hit6.role=registry --label io.hit6.index=0",
      "-p 8086:8080 -e LOG_FORMAT=json hit6-mesh/registry:0.1.0",
    ])
    error_message = "the registry is published on 8086: ${output.vms[0].docker_commands[1]}"
  }

  assert {
    condition = output.vms[1].docker_commands[3] == join(" ", [
      "docker container inspect hit6-vm2-node-3 >/dev/null 2>&1 ||",
      "docker run -d --name hit6-vm2-node-3 --network hit6 --restart unless-stopped",
      "--label io.hit6.project=hit6 --label io.hit6.role=node --label io.hit6.index=3 --label io.hit6.vm=2",
      "-p 8089:8080 -e PUERTO_EXT=8089 -e IP_EXT=203.0.113.11 -e NODE_NAME=hit6-vm2-node-3 -e LOG_FORMAT=json",
      "hit6-mesh/node:0.1.0 203.0.113.10 8086",
    ])
    error_message = "node 3 of VM 2 publishes 8089, advertises VM 2's ip and that port, and registers with VM 1: ${output.vms[1].docker_commands[3]}"
  }

  assert {
    condition = alltrue(flatten([
      for vm in output.vms : [
        for i, port in vm.node_ports : strcontains(
          vm.docker_commands[i + (vm.runs_registry ? 2 : 1)],
          "-p ${port}:8080 -e PUERTO_EXT=${port} -e IP_EXT=${var.advertise_ips[vm.index - 1]} ",
        )
      ]
    ]))
    error_message = "every node publishes its PUERTO_EXT and advertises its own VM's ip"
  }

  assert {
    condition     = length(distinct(flatten(output.vms[*].node_names))) == 6
    error_message = "node names (NODE_NAME, unique in the registry) differ across VMs: ${jsonencode(output.vms[*].node_names)}"
  }

  assert {
    condition = alltrue([
      for vm in output.vms : strcontains(vm.startup_script, join("\n", concat(
        ["# >>> hit6-mesh containers >>>"], vm.docker_commands, ["# <<< hit6-mesh containers <<<"],
      )))
    ])
    error_message = "each startup script holds exactly its docker_commands between the markers"
  }

  assert {
    condition = alltrue([
      for script in output.startup_scripts : startswith(script, "#!/bin/sh\n") &&
      strcontains(script, "if ! command -v docker >/dev/null 2>&1; then") &&
      strcontains(script, "curl -fsSL https://get.docker.com | sh") &&
      strcontains(script, "cat >/usr/local/bin/hit6-mesh-status <<'HIT6_MESH_STATUS'\n${output.status_script}HIT6_MESH_STATUS\n")
    ])
    error_message = "each script installs Docker when missing and the status command"
  }

  assert {
    condition     = output.vms[0].images == tolist(["hit6-mesh/registry:0.1.0", "hit6-mesh/node:0.1.0"]) && output.vms[1].images == tolist(["hit6-mesh/node:0.1.0"])
    error_message = "VM 1 gets both images, the other VMs only the node's"
  }

  assert {
    condition = (
      strcontains(output.startup_scripts[0], "docker pull hit6-mesh/registry:0.1.0 ||") &&
      strcontains(output.startup_scripts[0], "docker pull hit6-mesh/node:0.1.0 ||") &&
      !strcontains(output.startup_scripts[1], "hit6-mesh/registry") &&
      strcontains(output.startup_scripts[1], "docker pull hit6-mesh/node:0.1.0 ||")
    )
    error_message = "each script pulls the images its VM runs"
  }

  assert {
    condition     = !strcontains(join("", output.startup_scripts), "PUBLIC_IP")
    error_message = "with advertise_ips, no address is looked up on the VM"
  }

  assert {
    condition     = output.expected_greetings == 15
    error_message = "6 nodes: 15 pairs"
  }

  assert {
    condition     = output.summary == "2 VMs: VM 1 runs the registry on port 8086; each VM runs 3 nodes on ports 8087-8089 (6 nodes in all); the mesh is complete at 15 greetings."
    error_message = "summary: ${output.summary}"
  }

  assert {
    condition = (
      strcontains(output.status_script, "--filter label=io.hit6.project=hit6 --filter label=io.hit6.role=node") &&
      strcontains(output.status_script, "echo \"received on this VM: $total\"") &&
      output.mesh_command == "hit6-mesh-status"
    )
    error_message = "the status command counts this project's node greetings"
  }
}

run "adding_a_vm_leaves_the_other_scripts_alone" {
  command = plan

  variables {
    node_vms      = 3
    advertise_ips = ["203.0.113.10", "203.0.113.11", "203.0.113.12"]
  }

  assert {
    condition     = length(output.startup_scripts) == 3 && strcontains(output.startup_scripts[2], "-e IP_EXT=203.0.113.12 ")
    error_message = "VM 3 is rendered"
  }

  assert {
    condition = (
      sha256(output.startup_scripts[0]) == sha256(run.two_vms_as_in_the_lab.startup_scripts[0]) &&
      sha256(output.startup_scripts[1]) == sha256(run.two_vms_as_in_the_lab.startup_scripts[1])
    )
    error_message = "the scripts of VMs 1 and 2 do not depend on node_vms, so that adding a VM does not replace them"
  }

  assert {
    condition     = output.expected_greetings == 36
    error_message = "9 nodes: 36 pairs"
  }
}

run "advertised_ip_from_a_metadata_command" {
  command = plan

  variables {
    advertise_ips        = []
    advertise_ip_command = "curl -fsS http://169.254.169.254/latest/meta-data/public-ipv4"
  }

  assert {
    condition = alltrue([
      for script in output.startup_scripts :
      strcontains(script, "until PUBLIC_IP=\"$(curl -fsS http://169.254.169.254/latest/meta-data/public-ipv4)\" && [ -n \"$PUBLIC_IP\" ]; do")
    ])
    error_message = "each VM reads its public ip with advertise_ip_command"
  }

  assert {
    condition = alltrue(flatten([
      for vm in output.vms : [for command in slice(vm.docker_commands, vm.runs_registry ? 2 : 1, length(vm.docker_commands)) : strcontains(command, " -e IP_EXT=\"$PUBLIC_IP\" ")]
    ]))
    error_message = "the nodes advertise $PUBLIC_IP"
  }

  assert {
    condition     = strcontains(output.vms[1].docker_commands[1], " hit6-mesh/node:0.1.0 203.0.113.10 8086")
    error_message = "the registry is still found at registry_host"
  }
}

run "ports_images_and_project_from_variables" {
  command = plan

  variables {
    project         = "sim-a"
    node_vms        = 1
    nodes_per_vm    = 4
    registry_port   = 18486
    node_port_range = "18487-18490"
    advertise_ips   = ["198.51.100.7"]
    registry_image  = "ghcr.io/acme/hit6-registry"
    node_image      = "localhost:5000/hit6/node"
    image_tag       = "1.2.3"
    log_format      = "text"
  }

  assert {
    condition     = output.node_ports == [18487, 18488, 18489, 18490] && output.firewall_ports == ["18486", "18487-18490"]
    error_message = "ports: ${jsonencode(output.node_ports)} ${jsonencode(output.firewall_ports)}"
  }

  assert {
    condition = output.vms[0].docker_commands == concat(
      ["docker network inspect sim-a >/dev/null 2>&1 || docker network create --label io.hit6.project=sim-a sim-a"],
      ["docker container inspect sim-a-registry >/dev/null 2>&1 || docker run -d --name sim-a-registry --network sim-a --restart unless-stopped --label io.hit6.project=sim-a --label io.hit6.role=registry --label io.hit6.index=0 -p 18486:8080 -e LOG_FORMAT=text ghcr.io/acme/hit6-registry:1.2.3"],
      [for i in range(4) : "docker container inspect sim-a-vm1-node-${i + 1} >/dev/null 2>&1 || docker run -d --name sim-a-vm1-node-${i + 1} --network sim-a --restart unless-stopped --label io.hit6.project=sim-a --label io.hit6.role=node --label io.hit6.index=${i + 1} --label io.hit6.vm=1 -p ${18487 + i}:8080 -e PUERTO_EXT=${18487 + i} -e IP_EXT=198.51.100.7 -e NODE_NAME=sim-a-vm1-node-${i + 1} -e LOG_FORMAT=text localhost:5000/hit6/node:1.2.3 203.0.113.10 18486"],
    )
    error_message = "docker commands: ${jsonencode(output.vms[0].docker_commands)}"
  }

  assert {
    condition     = output.expected_greetings == 6 && output.summary == "1 VM: VM 1 runs the registry on port 18486; each VM runs 4 nodes on ports 18487-18490 (4 nodes in all); the mesh is complete at 6 greetings."
    error_message = "summary: ${output.summary}"
  }
}

run "a_range_of_one_port" {
  command = plan

  variables {
    node_vms        = 1
    nodes_per_vm    = 1
    node_port_range = "9000-9000"
    advertise_ips   = ["203.0.113.10"]
  }

  assert {
    condition     = output.node_ports == [9000] && output.firewall_ports == ["8086", "9000"] && output.expected_greetings == 0
    error_message = "one node on 9000: ${jsonencode(output.firewall_ports)}"
  }
}

run "addresses_for_the_roots" {
  command = plan

  variables {
    ssh_user = "admin"
  }

  assert {
    condition     = output.registry_address == "203.0.113.10:8086" && jsonencode(output.vm_ips) == jsonencode(["203.0.113.10", "203.0.113.11"])
    error_message = "registry address ${output.registry_address}, vm ips ${jsonencode(output.vm_ips)}"
  }

  assert {
    condition = jsonencode(output.node_endpoints) == jsonencode([
      "203.0.113.10:8087", "203.0.113.10:8088", "203.0.113.10:8089",
      "203.0.113.11:8087", "203.0.113.11:8088", "203.0.113.11:8089",
    ])
    error_message = "node endpoints: ${jsonencode(output.node_endpoints)}"
  }

  assert {
    condition     = output.ssh_mesh_command == "for ip in 203.0.113.10 203.0.113.11; do ssh admin@$ip sudo hit6-mesh-status; done"
    error_message = "ssh mesh command: ${output.ssh_mesh_command}"
  }
}

run "no_ssh_command_without_a_user_or_known_ips" {
  command = plan

  variables {
    advertise_ips        = []
    advertise_ip_command = "curl -fsS http://metadata/ip"
    ssh_user             = "admin"
  }

  assert {
    condition     = output.ssh_mesh_command == null && length(output.node_endpoints) == 0
    error_message = "the VMs' ips are not known before they boot"
  }
}

run "a_join_token_reaches_the_containers_in_an_env_file_only" {
  command = plan

  variables {
    join_token  = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    secrets_dir = "/run/hit6"
  }

  assert {
    condition     = nonsensitive(output.vms[0].docker_commands[0]) == "install -d -m 700 /run/hit6 && (umask 077 && printf '%s\\n' 'HIT6_JOIN_TOKEN=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef' >/run/hit6/hit6.env)"
    error_message = "the first command writes the env file, readable by root only"
  }

  assert {
    condition = alltrue(flatten([
      for vm in nonsensitive(output.vms) : [
        for command in slice(vm.docker_commands, 1, length(vm.docker_commands)) :
        !strcontains(command, "0123456789abcdef0123456789abcdef") && (!strcontains(command, "docker run") || strcontains(command, "--env-file /run/hit6/hit6.env"))
      ]
    ]))
    error_message = "every container gets the env file, and no other command holds the token"
  }
}

run "a_join_token_from_secret_manager_is_fetched_at_boot_and_not_rendered" {
  command = plan

  variables {
    join_token_secret = { store = "gcp_secret_manager", name = "projects/hit6-test/secrets/hit6-join-token" }
  }

  assert {
    condition     = nonsensitive(output.vms[1].docker_commands[0]) == "install -d -m 700 /etc/hit6 && hit6-join-token /etc/hit6/hit6.env"
    error_message = "the first command has hit6-join-token write the env file: ${nonsensitive(output.vms[1].docker_commands[0])}"
  }

  assert {
    condition = alltrue([
      for script in nonsensitive(output.startup_scripts) :
      strcontains(script, "cat >/usr/local/bin/hit6-join-token <<'HIT6_JOIN_TOKEN'\n${output.join_token_script}HIT6_JOIN_TOKEN\n")
    ])
    error_message = "every VM installs hit6-join-token before it starts the containers"
  }

  assert {
    condition = alltrue([
      strcontains(output.join_token_script, "'http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token'"),
      strcontains(output.join_token_script, "'https://secretmanager.googleapis.com/v1/projects/hit6-test/secrets/hit6-join-token/versions/latest:access'"),
      !strcontains(output.join_token_script, "ssm"),
    ])
    error_message = "the script asks the metadata server for the VM's access token, then Secret Manager for the latest version"
  }

  assert {
    condition = alltrue(flatten([
      for vm in nonsensitive(output.vms) : [
        for command in vm.docker_commands : !strcontains(command, "docker run") || strcontains(command, "--env-file /etc/hit6/hit6.env")
      ]
    ]))
    error_message = "every container gets the env file"
  }
}

run "a_join_token_from_ssm_signs_for_its_region_at_the_endpoints_given" {
  command = plan

  variables {
    join_token_secret = {
      store             = "aws_ssm"
      name              = "/hit6/join-token"
      region            = "eu-west-1"
      endpoint          = "https://vpce-0123.ssm.eu-west-1.vpce.amazonaws.com"
      metadata_endpoint = "http://[fd00:ec2::254]"
    }
  }

  assert {
    condition = alltrue([
      strcontains(output.join_token_script, "'http://[fd00:ec2::254]/latest/api/token'"),
      strcontains(output.join_token_script, "--aws-sigv4 'aws:amz:eu-west-1:ssm'"),
      strcontains(output.join_token_script, "--data '{\"Name\":\"/hit6/join-token\",\"WithDecryption\":true}' 'https://vpce-0123.ssm.eu-west-1.vpce.amazonaws.com/'"),
    ])
    error_message = "IMDSv2 (over IPv6 here) for the role's credentials, then GetParameter signed for eu-west-1 at the VPC endpoint"
  }
}
