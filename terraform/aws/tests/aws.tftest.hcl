# terraform/aws against a mocked AWS provider: nothing is created and no
# credentials are needed, but the provider binary must be installed (it gives
# the schema), so this runs only where it is at hand: see tests/tests/terraform.rs.

mock_provider "aws" {
  mock_data "aws_ami" {
    defaults = { id = "ami-0123456789abcdef0" }
  }

  mock_resource "aws_eip" {
    defaults = { id = "eipalloc-0123456789abcdef0", public_ip = "203.0.113.10" }
  }
}

variables {
  allowed_cidrs  = ["0.0.0.0/0"]
  join_token     = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
  node_vms       = 2
  subnet_id      = null
  ssh_public_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGhpdDYtbWVzaC10ZXN0LWtleQ test"
}

# Runs share state, so this one, with no key pair, comes first.
run "one_vm_with_an_ami_given_and_no_ssh_key" {
  variables {
    node_vms       = 1
    ami            = "ami-00000000000000001"
    ssh_public_key = null
    subnet_id      = "subnet-0123456789abcdef0"
  }

  assert {
    condition     = length(aws_instance.vm) == 1 && length(data.aws_ami.debian) == 0 && aws_instance.vm[0].ami == "ami-00000000000000001"
    error_message = "a given AMI is used as is"
  }

  assert {
    condition     = aws_instance.vm[0].subnet_id == "subnet-0123456789abcdef0" && aws_security_group.mesh.vpc_id == data.aws_subnet.chosen[0].vpc_id
    error_message = "the security group is in the given subnet's VPC"
  }

  assert {
    condition     = length(aws_key_pair.ssh) == 0
    error_message = "no key pair without a key"
  }

  assert {
    condition     = jsonencode(output.node_endpoints) == jsonencode(["203.0.113.10:8087", "203.0.113.10:8088", "203.0.113.10:8089"])
    error_message = "node endpoints: ${jsonencode(output.node_endpoints)}"
  }
}

run "two_vms_with_the_module_scripts" {
  override_resource {
    target = aws_eip.vm[1]
    values = { id = "eipalloc-0fedcba9876543210", public_ip = "203.0.113.11" }
  }

  assert {
    condition     = length(aws_instance.vm) == 2 && length(aws_eip.vm) == 2 && length(aws_eip_association.vm) == 2
    error_message = "one instance, address and association per VM"
  }

  assert {
    condition     = aws_instance.vm[0].user_data == module.cluster.startup_scripts[0] && aws_instance.vm[1].user_data == module.cluster.startup_scripts[1]
    error_message = "each instance boots with its VM's script"
  }

  assert {
    condition     = strcontains(aws_instance.vm[0].user_data, "-p 8086:8080") && !strcontains(aws_instance.vm[1].user_data, "hit6-registry")
    error_message = "the registry runs on VM 1 only"
  }

  assert {
    condition = alltrue([
      for port in [8087, 8088, 8089] :
      strcontains(aws_instance.vm[1].user_data, "-p ${port}:8080 -e PUERTO_EXT=${port} -e IP_EXT=203.0.113.11 ") &&
      strcontains(aws_instance.vm[0].user_data, "-p ${port}:8080 -e PUERTO_EXT=${port} -e IP_EXT=203.0.113.10 ")
    ])
    error_message = "the nodes of each VM advertise that VM's Elastic IP and their PUERTO_EXT"
  }

  assert {
    condition     = strcontains(aws_instance.vm[1].user_data, " hit6-mesh/node:0.1.0 203.0.113.10 8086")
    error_message = "the nodes of VM 2 register with VM 1"
  }

  assert {
    condition = alltrue([
      for vm in aws_instance.vm :
      !strcontains(vm.user_data, "0123456789abcdef0123456789abcdef") && strcontains(vm.user_data, "--aws-sigv4 'aws:amz:us-east-1:ssm'") &&
      strcontains(vm.user_data, "{\"Name\":\"/hit6/join-token\",\"WithDecryption\":true}") && strcontains(vm.user_data, "&& hit6-join-token /etc/hit6/hit6.env")
    ])
    error_message = "the scripts fetch the token from SSM at boot and do not hold it"
  }

  assert {
    condition = (
      aws_ssm_parameter.join_token.type == "SecureString" && aws_ssm_parameter.join_token.value_wo == null &&
      jsondecode(aws_iam_role_policy.read_join_token.policy).Statement[0].Resource == aws_ssm_parameter.join_token.arn &&
      jsondecode(aws_iam_role_policy.read_join_token.policy).Statement[0].Action == "ssm:GetParameter" &&
      aws_instance.vm[1].iam_instance_profile == aws_iam_instance_profile.vm.name
    )
    error_message = "the token is a SecureString that the state does not hold, which the VMs' role alone may read"
  }

  assert {
    condition     = aws_instance.vm[0].metadata_options[0].http_tokens == "required" && aws_instance.vm[0].metadata_options[0].http_put_response_hop_limit == 1
    error_message = "IMDSv2 only, out of the containers' reach"
  }

  assert {
    condition     = aws_instance.vm[0].ami == "ami-0123456789abcdef0" && aws_instance.vm[0].instance_type == "t3.small" && aws_instance.vm[0].key_name == "hit6-ssh"
    error_message = "Debian AMI, the machine type and the ssh key"
  }

  assert {
    condition = (
      length(aws_security_group.mesh.ingress) == 3 &&
      contains([for rule in aws_security_group.mesh.ingress : "${rule.from_port}-${rule.to_port}"], "22-22") &&
      contains([for rule in aws_security_group.mesh.ingress : "${rule.from_port}-${rule.to_port}"], "8086-8086") &&
      contains([for rule in aws_security_group.mesh.ingress : "${rule.from_port}-${rule.to_port}"], "8087-8095")
    )
    error_message = "the security group opens ssh, the registry and the node range"
  }

  assert {
    condition = alltrue([
      for rule in aws_security_group.mesh.ingress : toset(rule.cidr_blocks) == toset(["0.0.0.0/0", "203.0.113.10/32", "203.0.113.11/32"])
    ])
    error_message = "allowed_cidrs and the VMs' own addresses may connect"
  }

  assert {
    condition     = output.registry_address == "203.0.113.10:8086"
    error_message = "registry address: ${output.registry_address}"
  }

  assert {
    condition = jsonencode(output.node_endpoints) == jsonencode([
      "203.0.113.10:8087", "203.0.113.10:8088", "203.0.113.10:8089",
      "203.0.113.11:8087", "203.0.113.11:8088", "203.0.113.11:8089",
    ])
    error_message = "node endpoints: ${jsonencode(output.node_endpoints)}"
  }

  assert {
    condition     = output.mesh_command == "for ip in 203.0.113.10 203.0.113.11; do ssh admin@$ip sudo hit6-mesh-status; done" && output.expected_greetings == 15
    error_message = "mesh command: ${output.mesh_command}"
  }
}

run "a_swarm_of_two_vms" {
  variables {
    orchestrator    = "swarm"
    launcher_url    = "https://github.com/acme/hit6/releases/download/v0.1.0/launcher-x86_64-linux"
    launcher_sha256 = "5f0c3a9e1d2b4c6a8e0f1a3b5c7d9e1f2a4b6c8d0e2f4a6b8c0d2e4f6a8b0c2d"
  }

  override_resource {
    target = aws_eip.vm[1]
    values = { id = "eipalloc-0fedcba9876543210", public_ip = "203.0.113.11" }
  }

  assert {
    condition = (
      aws_ssm_parameter.swarm_token[0].name == "/hit6/swarm-worker-token" && aws_ssm_parameter.swarm_token[0].type == "SecureString" &&
      aws_ssm_parameter.swarm_token[0].value_wo == null
    )
    error_message = "the worker token's parameter is a SecureString whose value the state does not hold"
  }

  assert {
    condition = (
      aws_instance.vm[0].iam_instance_profile == aws_iam_instance_profile.manager[0].name &&
      aws_instance.vm[1].iam_instance_profile == aws_iam_instance_profile.vm.name &&
      jsondecode(aws_iam_role_policy.manager[0].policy).Statement == [
        { Effect = "Allow", Action = "ssm:GetParameter", Resource = aws_ssm_parameter.join_token.arn },
        { Effect = "Allow", Action = "ssm:PutParameter", Resource = aws_ssm_parameter.swarm_token[0].arn },
      ] &&
      jsondecode(aws_iam_role_policy.read_join_token.policy).Statement == [
        { Effect = "Allow", Action = "ssm:GetParameter", Resource = aws_ssm_parameter.swarm_token[0].arn },
      ]
    )
    error_message = "VM 1 alone may write the worker token (and read the join token); the workers may only read the worker token"
  }

  assert {
    condition = (
      toset([for rule in aws_security_group.mesh.ingress : "${rule.protocol}/${rule.from_port}-${rule.to_port}" if rule.self == true]) ==
      toset(["tcp/2377-2377", "tcp/7946-7946", "udp/7946-7946", "udp/4789-4789"]) &&
      alltrue([for rule in aws_security_group.mesh.ingress : length(coalesce(rule.cidr_blocks, [])) == 0 if rule.self == true]) &&
      length(aws_security_group.mesh.ingress) == 7
    )
    error_message = "the swarm's ports are open between the group's members only, besides ssh, the registry and the nodes"
  }

  assert {
    condition = (
      strcontains(aws_instance.vm[0].user_data, "docker swarm init --advertise-addr \"$PRIVATE_IP\"") &&
      strcontains(aws_instance.vm[0].user_data, "exec launcher -p hit6 up --runtime swarm --publish --nodes 6 ") &&
      strcontains(aws_instance.vm[1].user_data, "elif value=\"$(hit6-swarm-token get)\"; then") &&
      !strcontains(aws_instance.vm[1].user_data, "launcher -p") &&
      strcontains(aws_instance.vm[1].user_data, "| curl -fsS -K - http://169.254.169.254/latest/meta-data/local-ipv4)\"") &&
      strcontains(aws_instance.vm[1].user_data, "label=\"io.hit6.advertise-ip=203.0.113.11\"")
    )
    error_message = "VM 1 makes the swarm and runs the launcher; VM 2 joins, its private ip from IMDSv2 and its label its Elastic IP"
  }

  assert {
    condition     = terraform_data.swarm_manager.input == sha256(aws_instance.vm[0].user_data)
    error_message = "a change of VM 1's script replaces every VM, so that no worker is left in an old swarm"
  }
}

run "a_swarm_with_three_registry_replicas" {
  variables {
    orchestrator    = "swarm"
    registries      = 3
    launcher_url    = "https://github.com/acme/hit6/releases/download/v0.1.0/launcher-x86_64-linux"
    launcher_sha256 = "5f0c3a9e1d2b4c6a8e0f1a3b5c7d9e1f2a4b6c8d0e2f4a6b8c0d2e4f6a8b0c2d"
  }

  assert {
    condition = (
      toset([for rule in aws_security_group.mesh.ingress : "${rule.from_port}-${rule.to_port}" if rule.description == "registry"]) ==
      toset(["8086-8086", "8096-8096", "8097-8097"]) &&
      strcontains(aws_instance.vm[0].user_data, " --registries 3 --etcd-image gcr.io/etcd-development/etcd:v3.5.17 ") &&
      strcontains(aws_instance.vm[1].user_data, "docker pull gcr.io/etcd-development/etcd:v3.5.17 ||")
    )
    error_message = "each replica's port is open, VM 1 starts the replicas, and every VM pulls the etcd image"
  }
}

run "a_metrics_port_is_opened_to_allowed_cidrs_only" {
  override_resource {
    target = aws_eip.vm[1]
    values = { id = "eipalloc-0fedcba9876543210", public_ip = "203.0.113.11" }
  }

  variables {
    allowed_cidrs = ["198.51.100.0/24"]
    metrics_port  = 9180
  }

  assert {
    condition = [
      for rule in aws_security_group.mesh.ingress : rule.cidr_blocks if rule.from_port == 9180 && rule.to_port == 9180
    ] == [["198.51.100.0/24"]]
    error_message = "the registry's HTTP listener is open to allowed_cidrs, and not to the VMs"
  }

  assert {
    condition     = strcontains(aws_instance.vm[0].user_data, " -p 9180:8081 ")
    error_message = "VM 1 publishes the registry's HTTP listener"
  }
}
