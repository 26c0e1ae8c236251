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
