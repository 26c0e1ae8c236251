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
    condition = (
      output.orchestrator == "docker" && length(output.swarm_ports) == 0 && output.launcher_command == null &&
      !strcontains(lower(join("", output.startup_scripts)), "swarm") && !strcontains(join("", output.startup_scripts), "launcher")
    )
    error_message = "docker, the default, has no swarm and no launcher"
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

# orchestrator = "swarm": VM 1 makes the swarm and deploys with the launcher;
# the other VMs join with the worker token VM 1 leaves in the secret store.
run "a_swarm_of_two_vms_made_by_vm_1_deployed_by_the_launcher" {
  command = plan

  variables {
    orchestrator       = "swarm"
    launcher_url       = "https://github.com/acme/hit6/releases/download/v0.1.0/launcher-x86_64-linux"
    launcher_sha256    = "5f0c3a9e1d2b4c6a8e0f1a3b5c7d9e1f2a4b6c8d0e2f4a6b8c0d2e4f6a8b0c2d"
    private_ip_command = "curl -fsS http://169.254.169.254/latest/meta-data/local-ipv4"
    join_token_secret = {
      store            = "aws_ssm"
      name             = "/hit6/join-token"
      region           = "eu-west-1"
      swarm_token_name = "/hit6/swarm-worker-token"
    }
  }

  assert {
    condition     = output.vms[0].swarm_role == "manager" && output.vms[1].swarm_role == "worker"
    error_message = "VM 1 manages the swarm, VM 2 is a worker"
  }

  assert {
    condition = output.launcher_command == join(" ", [
      "[ -e /var/lib/hit6/hit6.deployed ] || { (set -a && . /etc/hit6/hit6.env && set +a && exec",
      "launcher -p hit6 up --runtime swarm --publish --nodes 6 --port-range 8087-8095 --registry-port 8086",
      "--registry-image hit6-mesh/registry:0.1.0 --node-image hit6-mesh/node:0.1.0 --detach --quiet --timeout 600s)",
      "&& mkdir -p /var/lib/hit6 && touch /var/lib/hit6/hit6.deployed; }",
    ])
    error_message = "VM 1 runs the launcher once, with the join token in its environment from the env file: ${output.launcher_command}"
  }

  assert {
    condition = (
      jsonencode(nonsensitive(output.vms[0].docker_commands)) == jsonencode(["install -d -m 700 /etc/hit6 && hit6-join-token /etc/hit6/hit6.env", output.launcher_command]) &&
      length(output.vms[1].docker_commands) == 0
    )
    error_message = "between the markers, VM 1 fetches the join token and runs the launcher; the workers start nothing: ${jsonencode(nonsensitive(output.vms[*].docker_commands))}"
  }

  assert {
    condition = alltrue([
      for script in nonsensitive(output.startup_scripts) : strcontains(script, join("\n", concat(
        ["# >>> hit6-mesh containers >>>"], nonsensitive(output.vms[index(nonsensitive(output.startup_scripts), script)].docker_commands), ["# <<< hit6-mesh containers <<<"],
      )))
    ])
    error_message = "each startup script holds exactly its docker_commands between the markers"
  }

  assert {
    condition = alltrue([
      for script in nonsensitive(output.startup_scripts) : !strcontains(script, "docker run -d") && !strcontains(script, "docker network create")
    ])
    error_message = "with swarm no VM runs docker run lines: the launcher creates the services"
  }

  assert {
    condition = alltrue([
      for needle in [
        "curl -fsSL --retry 5 -o /usr/local/bin/launcher.download 'https://github.com/acme/hit6/releases/download/v0.1.0/launcher-x86_64-linux'",
        "echo '5f0c3a9e1d2b4c6a8e0f1a3b5c7d9e1f2a4b6c8d0e2f4a6b8c0d2e4f6a8b0c2d  /usr/local/bin/launcher.download' | sha256sum -c --status || {",
        "until PRIVATE_IP=\"$(curl -fsS http://169.254.169.254/latest/meta-data/local-ipv4)\" && [ -n \"$PRIVATE_IP\" ]; do",
        "label=\"io.hit6.advertise-ip=203.0.113.10\"",
        "docker swarm init --advertise-addr \"$PRIVATE_IP\" >/dev/null",
        "{ printf '%s:2377 ' \"$PRIVATE_IP\" && docker swarm join-token -q worker; } | hit6-swarm-token put",
        "until [ \"$(ready)\" -ge 2 ]; do",
        "cat >/usr/local/bin/hit6-swarm-token <<'HIT6_SWARM_TOKEN'\n${output.swarm_token_script}HIT6_SWARM_TOKEN\n",
      ] : strcontains(nonsensitive(output.startup_scripts[0]), needle)
    ])
    error_message = "VM 1 gets the launcher (checked), labels its engine with its public ip, makes the swarm on its private ip, leaves the worker token through a pipe, and waits for both VMs"
  }

  assert {
    condition = alltrue([
      for pair in [
        ["sha256sum -c --status ||", "docker swarm init"],
        ["label=\"io.hit6.advertise-ip=", "docker swarm init"],
        ["systemctl restart docker", "docker swarm init"],
        ["docker swarm init", "| hit6-swarm-token put"],
        ["| hit6-swarm-token put", "until [ \"$(ready)\" -ge 2 ]"],
        ["until [ \"$(ready)\" -ge 2 ]", "exec launcher -p hit6 up"],
      ] : length(split(pair[0], nonsensitive(output.startup_scripts[0]))[0]) < length(split(pair[1], nonsensitive(output.startup_scripts[0]))[0])
    ])
    error_message = "VM 1: the launcher and the engine label first, then the swarm, the worker token, every VM ready, and only then the launcher"
  }

  assert {
    condition = alltrue([
      for needle in [
        "label=\"io.hit6.advertise-ip=203.0.113.11\"",
        "elif value=\"$(hit6-swarm-token get)\"; then",
        "\"RemoteAddrs\":[\"%s\"],\"JoinToken\":\"%s\"}' \"$PRIVATE_IP\" \"$manager\" \"$token\" |",
        "curl -sS --unix-socket /var/run/docker.sock -H 'Content-Type: application/json' --data-binary @- \\",
        "-w ' (HTTP %%{http_code})' http://localhost/swarm/join)\" || true",
        "cat >/usr/local/bin/hit6-swarm-token <<'HIT6_SWARM_TOKEN'\n${output.swarm_token_script}HIT6_SWARM_TOKEN\n",
      ] : strcontains(nonsensitive(output.startup_scripts[1]), needle)
    ])
    error_message = "VM 2 labels its engine, reads the worker token and joins through Docker's API, the token in the body on stdin"
  }

  assert {
    condition = alltrue([
      for needle in ["launcher -p", "/usr/local/bin/launcher", "docker swarm init", "hit6-join-token", "hit6-mesh/registry", "swarm join --token", "JoinToken\":\"SWMTKN"] :
      !strcontains(nonsensitive(output.startup_scripts[1]), needle)
    ])
    error_message = "a worker runs no launcher and makes no swarm, needs no registry join token, and puts no token on a command line"
  }

  assert {
    condition = alltrue([
      strcontains(output.swarm_token_script, "ssm PutParameter --data-binary \"@$body\""),
      strcontains(output.swarm_token_script, "printf '{\"Name\":\"/hit6/swarm-worker-token\",\"Type\":\"SecureString\",\"Overwrite\":true,\"Value\":\"%s\"}' \"$line\" >\"$body\""),
      strcontains(output.swarm_token_script, "ssm GetParameter --data '{\"Name\":\"/hit6/swarm-worker-token\",\"WithDecryption\":true}'"),
      strcontains(output.swarm_token_script, "--aws-sigv4 'aws:amz:eu-west-1:ssm'"),
      !strcontains(output.swarm_token_script, "/hit6/join-token"),
    ])
    error_message = "hit6-swarm-token puts and gets the worker token parameter, signed for its region, its value in a file rather than a command line"
  }

  assert {
    condition = jsonencode(output.swarm_ports) == jsonencode([
      { protocol = "tcp", port = 2377, purpose = "swarm management (the workers to the manager)" },
      { protocol = "tcp", port = 7946, purpose = "swarm node discovery" },
      { protocol = "udp", port = 7946, purpose = "swarm node discovery" },
      { protocol = "udp", port = 4789, purpose = "overlay network traffic (VXLAN)" },
    ]) && output.firewall_ports == ["8086", "8087-8095"]
    error_message = "the swarm's ports between the VMs, and the published ports as with docker: ${jsonencode(output.swarm_ports)}"
  }

  assert {
    condition = (
      output.summary == "2 VMs in a Docker swarm, VM 1 its manager: the launcher runs the registry on port 8086 and 6 nodes on ports 8087-8095 across the VMs; the mesh is complete at 15 greetings." &&
      length(output.node_endpoints) == 0 && output.expected_greetings == 15 && output.mesh_command == "hit6-mesh-status"
    )
    error_message = "summary: ${output.summary}"
  }
}

run "a_swarm_of_three_changes_vm_1_but_not_the_workers" {
  command = plan

  variables {
    orchestrator       = "swarm"
    node_vms           = 3
    advertise_ips      = ["203.0.113.10", "203.0.113.11", "203.0.113.12"]
    launcher_url       = "https://github.com/acme/hit6/releases/download/v0.1.0/launcher-x86_64-linux"
    launcher_sha256    = "5f0c3a9e1d2b4c6a8e0f1a3b5c7d9e1f2a4b6c8d0e2f4a6b8c0d2e4f6a8b0c2d"
    private_ip_command = "curl -fsS http://169.254.169.254/latest/meta-data/local-ipv4"
    join_token_secret = {
      store            = "aws_ssm"
      name             = "/hit6/join-token"
      region           = "eu-west-1"
      swarm_token_name = "/hit6/swarm-worker-token"
    }
  }

  assert {
    condition = (
      sha256(nonsensitive(output.startup_scripts[1])) == sha256(nonsensitive(run.a_swarm_of_two_vms_made_by_vm_1_deployed_by_the_launcher.startup_scripts[1])) &&
      sha256(nonsensitive(output.startup_scripts[0])) != sha256(nonsensitive(run.a_swarm_of_two_vms_made_by_vm_1_deployed_by_the_launcher.startup_scripts[0]))
    )
    error_message = "a worker's script does not depend on node_vms; VM 1's does (it waits for every VM and launches 3 nodes each)"
  }

  assert {
    condition     = strcontains(output.launcher_command, " --nodes 9 ") && strcontains(nonsensitive(output.startup_scripts[0]), "until [ \"$(ready)\" -ge 3 ]; do")
    error_message = "VM 1 waits for 3 VMs and launches 9 nodes"
  }
}

run "a_swarm_of_one_vm_with_literal_addresses_and_no_token" {
  command = plan

  variables {
    orchestrator    = "swarm"
    node_vms        = 1
    advertise_ips   = ["203.0.113.10"]
    private_ips     = ["10.0.0.5"]
    launcher_url    = "http://mirror.internal:8080/hit6/launcher"
    launcher_sha256 = "5f0c3a9e1d2b4c6a8e0f1a3b5c7d9e1f2a4b6c8d0e2f4a6b8c0d2e4f6a8b0c2d"
  }

  assert {
    condition     = output.launcher_command == "[ -e /var/lib/hit6/hit6.deployed ] || { launcher -p hit6 up --runtime swarm --publish --nodes 3 --port-range 8087-8095 --registry-port 8086 --registry-image hit6-mesh/registry:0.1.0 --node-image hit6-mesh/node:0.1.0 --detach --quiet --timeout 600s && mkdir -p /var/lib/hit6 && touch /var/lib/hit6/hit6.deployed; }"
    error_message = "without a token, no env file to source: ${output.launcher_command}"
  }

  assert {
    condition = (
      output.swarm_token_script == null && output.vms[0].private_ip == "10.0.0.5" &&
      strcontains(output.startup_scripts[0], "docker swarm init --advertise-addr \"10.0.0.5\" >/dev/null") &&
      !strcontains(output.startup_scripts[0], "hit6-swarm-token") && !strcontains(output.startup_scripts[0], "PRIVATE_IP")
    )
    error_message = "one VM needs no worker token, and a literal private ip is not looked up"
  }
}

run "a_swarm_on_gcp_adds_versions_to_its_secret" {
  command = plan

  variables {
    orchestrator       = "swarm"
    launcher_url       = "https://github.com/acme/hit6/releases/download/v0.1.0/launcher-x86_64-linux"
    launcher_sha256    = "5f0c3a9e1d2b4c6a8e0f1a3b5c7d9e1f2a4b6c8d0e2f4a6b8c0d2e4f6a8b0c2d"
    private_ip_command = "curl -fsS -H 'Metadata-Flavor: Google' http://metadata.google.internal/computeMetadata/v1/instance/network-interfaces/0/ip"
    join_token_secret = {
      store            = "gcp_secret_manager"
      name             = "projects/hit6-test/secrets/hit6-join-token"
      swarm_token_name = "projects/hit6-test/secrets/hit6-swarm-worker-token"
    }
  }

  assert {
    condition = alltrue([
      strcontains(output.swarm_token_script, "'https://secretmanager.googleapis.com/v1/projects/hit6-test/secrets/hit6-swarm-worker-token:addVersion'"),
      strcontains(output.swarm_token_script, "'https://secretmanager.googleapis.com/v1/projects/hit6-test/secrets/hit6-swarm-worker-token/versions/latest:access'"),
      strcontains(output.swarm_token_script, "roles/secretmanager.secretVersionAdder"),
      !strcontains(output.swarm_token_script, "ssm"),
    ])
    error_message = "VM 1 adds a version to the worker token's secret; the workers read its latest"
  }
}

run "a_swarm_of_three_with_three_registry_replicas" {
  command = plan

  variables {
    orchestrator       = "swarm"
    node_vms           = 3
    registries         = 3
    advertise_ips      = ["203.0.113.10", "203.0.113.11", "203.0.113.12"]
    launcher_url       = "https://github.com/acme/hit6/releases/download/v0.1.0/launcher-x86_64-linux"
    launcher_sha256    = "5f0c3a9e1d2b4c6a8e0f1a3b5c7d9e1f2a4b6c8d0e2f4a6b8c0d2e4f6a8b0c2d"
    private_ip_command = "curl -fsS http://169.254.169.254/latest/meta-data/local-ipv4"
    join_token_secret = {
      store            = "aws_ssm"
      name             = "/hit6/join-token"
      region           = "eu-west-1"
      swarm_token_name = "/hit6/swarm-worker-token"
    }
  }

  assert {
    condition     = strcontains(output.launcher_command, " --registry-port 8086 --registries 3 --etcd-image gcr.io/etcd-development/etcd:v3.5.17 --registry-image ")
    error_message = "VM 1's launcher starts 3 replicas on etcd: ${output.launcher_command}"
  }

  assert {
    condition     = output.registry_ports == [8086, 8096, 8097] && output.firewall_ports == ["8086", "8096", "8097", "8087-8095"]
    error_message = "the replicas are published on the registry port and the next ports past the node range, and the firewall opens them"
  }

  assert {
    condition = alltrue([
      for i in range(3) : jsonencode(nonsensitive(output.vms[i].images)) == jsonencode(["hit6-mesh/registry:0.1.0", "hit6-mesh/node:0.1.0", "gcr.io/etcd-development/etcd:v3.5.17"]) &&
      strcontains(nonsensitive(output.startup_scripts[i]), "docker pull gcr.io/etcd-development/etcd:v3.5.17 ||")
    ])
    error_message = "every VM may run a replica and its etcd member, so every VM pulls the three images"
  }
}

run "one_registry_publishes_one_port" {
  command = plan

  assert {
    condition     = output.registry_ports == [8086] && output.firewall_ports == ["8086", "8087-8095"]
    error_message = "without replicas, the registry port alone"
  }
}

run "a_metrics_port_publishes_the_registrys_http_listener" {
  command = plan

  variables {
    project       = "sim-m"
    node_vms      = 1
    nodes_per_vm  = 1
    advertise_ips = ["198.51.100.7"]
    metrics_port  = 9180
  }

  assert {
    condition     = strcontains(output.vms[0].docker_commands[1], " -p 8086:8080 -e LOG_FORMAT=json -p 9180:8081 ")
    error_message = "registry command: ${output.vms[0].docker_commands[1]}"
  }

  assert {
    condition     = output.metrics_port == 9180 && !contains(output.firewall_ports, "9180")
    error_message = "the metrics port is opened apart from the mesh's ports: ${jsonencode(output.firewall_ports)}"
  }
}

run "a_metrics_port_on_a_swarm_is_the_launchers_http_port" {
  command = plan

  variables {
    orchestrator       = "swarm"
    metrics_port       = 9180
    launcher_url       = "https://github.com/acme/hit6/releases/download/v0.1.0/launcher-x86_64-linux"
    launcher_sha256    = "5f0c3a9e1d2b4c6a8e0f1a3b5c7d9e1f2a4b6c8d0e2f4a6b8c0d2e4f6a8b0c2d"
    private_ip_command = "curl -fsS http://169.254.169.254/latest/meta-data/local-ipv4"
    join_token_secret = {
      store            = "aws_ssm"
      name             = "/hit6/join-token"
      region           = "eu-west-1"
      swarm_token_name = "/hit6/swarm-worker-token"
    }
  }

  assert {
    condition     = strcontains(output.launcher_command, " --registry-port 8086 --http-port 9180 --registry-image ")
    error_message = "VM 1's launcher publishes the registry's HTTP listener: ${output.launcher_command}"
  }
}
