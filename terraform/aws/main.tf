# terraform/aws: the VMs of terraform/modules/cluster on EC2. One Elastic IP
# per VM is allocated first, so that every startup script (user_data) can be
# rendered with the registry's address and its own VM's address; the module
# does everything else. The join token goes to an SSM SecureString parameter,
# readable by the VMs' instance role only, and each VM fetches it at boot
# over IMDSv2: neither its user data nor the Terraform state holds it.
#
# With orchestrator = "swarm", VM 1 has an identity of its own: it reads the
# join token and writes the swarm's worker token into a second parameter,
# which the other VMs, the workers, may only read.

module "cluster" {
  source = "../modules/cluster"

  project         = var.name
  registry_host   = aws_eip.vm[0].public_ip
  registry_port   = var.registry_port
  metrics_port    = var.metrics_port
  node_vms        = var.node_vms
  nodes_per_vm    = var.nodes_per_vm
  node_port_range = var.node_port_range
  registry_image  = var.registry_image
  node_image      = var.node_image
  image_tag       = var.image_tag
  join_token_secret = {
    store            = "aws_ssm"
    name             = aws_ssm_parameter.join_token.name
    region           = var.region
    swarm_token_name = local.swarm ? aws_ssm_parameter.swarm_token[0].name : null
  }
  advertise_ips   = aws_eip.vm[*].public_ip
  ssh_user        = var.ssh_user
  orchestrator    = var.orchestrator
  registries      = var.registries
  etcd_image      = var.etcd_image
  launcher_url    = var.launcher_url
  launcher_sha256 = var.launcher_sha256
  # IMDSv2, its session token passed to curl in its config on stdin.
  private_ip_command = local.swarm ? "printf 'header = \"X-aws-ec2-metadata-token: %s\"\\n' \"$(curl -fsS -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' http://169.254.169.254/latest/api/token)\" | curl -fsS -K - http://169.254.169.254/latest/meta-data/local-ipv4" : null
}

locals {
  swarm = var.orchestrator == "swarm"
}

# Write-only: sent to SSM, kept in neither the plan nor the state. Encrypted
# with the account's aws/ssm key, which the role may use through SSM.
resource "aws_ssm_parameter" "join_token" {
  name             = "/${var.name}/join-token"
  type             = "SecureString"
  value_wo         = var.join_token
  value_wo_version = var.join_token_version
}

# With swarm: where VM 1 leaves the worker token. Terraform writes only a
# placeholder, write-only, so that neither the plan nor the state holds what
# VM 1 writes over it; raising value_wo_version would write it again.
resource "aws_ssm_parameter" "swarm_token" {
  count            = local.swarm ? 1 : 0
  name             = "/${var.name}/swarm-worker-token"
  type             = "SecureString"
  value_wo         = "none"
  value_wo_version = 1
}

# The VMs' identity: it may read the join token and nothing else (with swarm:
# the workers' identity, which may read the worker token and nothing else).
resource "aws_iam_role" "vm" {
  name = "${var.name}-vm"
  assume_role_policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = "sts:AssumeRole", Principal = { Service = "ec2.amazonaws.com" } }]
  })
}

resource "aws_iam_role_policy" "read_join_token" {
  name = "read-join-token"
  role = aws_iam_role.vm.id
  policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = "ssm:GetParameter", Resource = local.swarm ? aws_ssm_parameter.swarm_token[0].arn : aws_ssm_parameter.join_token.arn }]
  })
}

resource "aws_iam_instance_profile" "vm" {
  name = "${var.name}-vm"
  role = aws_iam_role.vm.name
}

# With swarm, VM 1's identity: it reads the join token, for the launcher, and
# writes the worker token; nothing else.
resource "aws_iam_role" "manager" {
  count = local.swarm ? 1 : 0
  name  = "${var.name}-manager"
  assume_role_policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = "sts:AssumeRole", Principal = { Service = "ec2.amazonaws.com" } }]
  })
}

resource "aws_iam_role_policy" "manager" {
  count = local.swarm ? 1 : 0
  name  = "read-join-token-write-swarm-token"
  role  = aws_iam_role.manager[0].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      { Effect = "Allow", Action = "ssm:GetParameter", Resource = aws_ssm_parameter.join_token.arn },
      { Effect = "Allow", Action = "ssm:PutParameter", Resource = aws_ssm_parameter.swarm_token[0].arn },
    ]
  })
}

resource "aws_iam_instance_profile" "manager" {
  count = local.swarm ? 1 : 0
  name  = "${var.name}-manager"
  role  = aws_iam_role.manager[0].name
}

data "aws_ami" "debian" {
  count       = var.ami == null ? 1 : 0
  most_recent = true
  owners      = ["136693071363"] # Debian

  filter {
    name   = "name"
    values = ["debian-12-amd64-*"]
  }
}

resource "aws_eip" "vm" {
  count  = var.node_vms
  domain = "vpc"
  tags   = { Name = "${var.name}-vm${count.index + 1}" }
}

resource "aws_key_pair" "ssh" {
  count      = var.ssh_public_key == null ? 0 : 1
  key_name   = "${var.name}-ssh"
  public_key = var.ssh_public_key
}

data "aws_subnet" "chosen" {
  count = var.subnet_id == null ? 0 : 1
  id    = var.subnet_id
}

locals {
  # Who may connect: var.allowed_cidrs, and the VMs themselves, whose nodes
  # greet each other through their public ips.
  allowed_cidrs = distinct(concat(var.allowed_cidrs, [for a in aws_eip.vm : "${a.public_ip}/32"]))
}

resource "aws_security_group" "mesh" {
  name        = "${var.name}-mesh"
  vpc_id      = var.subnet_id == null ? null : data.aws_subnet.chosen[0].vpc_id # null: the default VPC
  description = "hit6-mesh: ssh, the registry and the node ports"

  ingress {
    description = "ssh"
    protocol    = "tcp"
    from_port   = 22
    to_port     = 22
    cidr_blocks = local.allowed_cidrs
  }

  dynamic "ingress" {
    for_each = module.cluster.registry_ports
    content {
      description = "registry"
      protocol    = "tcp"
      from_port   = ingress.value
      to_port     = ingress.value
      cidr_blocks = local.allowed_cidrs
    }
  }

  # The operators' HTTP listener: their addresses only, not the VMs'.
  dynamic "ingress" {
    for_each = module.cluster.metrics_port == null ? [] : [module.cluster.metrics_port]
    content {
      description = "registry /metrics, /health and status page"
      protocol    = "tcp"
      from_port   = ingress.value
      to_port     = ingress.value
      cidr_blocks = var.allowed_cidrs
    }
  }

  ingress {
    description = "nodes"
    protocol    = "tcp"
    from_port   = module.cluster.node_port_range.from
    to_port     = module.cluster.node_port_range.to
    cidr_blocks = local.allowed_cidrs
  }

  # With swarm, from the VMs only (this group's members, at their private ips).
  dynamic "ingress" {
    for_each = module.cluster.swarm_ports
    content {
      description = ingress.value.purpose
      protocol    = ingress.value.protocol
      from_port   = ingress.value.port
      to_port     = ingress.value.port
      self        = true
    }
  }

  egress {
    description = "everything out: images, the Docker installer, the other VMs"
    protocol    = "-1"
    from_port   = 0
    to_port     = 0
    cidr_blocks = ["0.0.0.0/0"]
  }
}

resource "aws_instance" "vm" {
  count                       = var.node_vms
  ami                         = var.ami == null ? data.aws_ami.debian[0].id : var.ami
  instance_type               = var.instance_type
  subnet_id                   = var.subnet_id
  key_name                    = var.ssh_public_key == null ? null : aws_key_pair.ssh[0].key_name
  vpc_security_group_ids      = [aws_security_group.mesh.id]
  user_data                   = module.cluster.startup_scripts[count.index]
  user_data_replace_on_change = true
  iam_instance_profile        = local.swarm && count.index == 0 ? aws_iam_instance_profile.manager[0].name : aws_iam_instance_profile.vm.name
  tags                        = { Name = "${var.name}-vm${count.index + 1}" }

  # IMDSv2 only, one hop: the VM's script gets the role's credentials, the
  # containers (one hop further, behind Docker's bridge) cannot.
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  # The script reads the token at boot.
  depends_on = [aws_iam_role_policy.read_join_token, aws_iam_role_policy.manager]

  lifecycle {
    replace_triggered_by = [terraform_data.swarm_manager]
  }
}

# With swarm, a new VM 1 makes a new swarm, which the workers of the old one
# would not join: so whatever replaces VM 1 replaces them all. With docker
# this never changes.
resource "terraform_data" "swarm_manager" {
  input = local.swarm ? sha256(module.cluster.startup_scripts[0]) : "docker"
}

resource "aws_eip_association" "vm" {
  count         = var.node_vms
  instance_id   = aws_instance.vm[count.index].id
  allocation_id = aws_eip.vm[count.index].id
}
