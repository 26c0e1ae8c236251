# The cloud side: where the VMs run and how to reach them.

variable "gcp_project" {
  description = "Id of the Google Cloud project to create the VMs in."
  type        = string
}

variable "region" {
  description = "Region of the VMs' static addresses; it must hold zone."
  type        = string
  default     = "us-central1"
}

variable "zone" {
  description = "Zone of the VMs."
  type        = string
  default     = "us-central1-a"
}

variable "machine_type" {
  description = "Machine type of every VM."
  type        = string
  default     = "e2-small"
}

variable "image" {
  description = "Boot image of the VMs."
  type        = string
  default     = "debian-cloud/debian-12"
}

variable "network" {
  description = "VPC network of the VMs and of the firewall rule."
  type        = string
  default     = "default"
}

variable "ssh_user" {
  description = "User that ssh_public_key is installed for, and that the mesh command logs in as."
  type        = string
  default     = "hit6"
}

variable "ssh_public_key" {
  description = "OpenSSH public key (the contents of ~/.ssh/id_ed25519.pub, say) installed for ssh_user through the ssh-keys metadata. Without it, use gcloud compute ssh."
  type        = string
  default     = null
}

variable "allowed_cidrs" {
  description = "Addresses allowed to reach ssh, the registry and the nodes, besides the VMs themselves (the nodes greet each other through the VMs' public ips, which are always allowed). No default: say who, e.g. [\"203.0.113.7/32\"] for your own address; [\"0.0.0.0/0\"] opens them to the whole internet, where the join token is all that keeps strangers out."
  type        = list(string)

  validation {
    condition     = length(var.allowed_cidrs) > 0 && alltrue([for cidr in var.allowed_cidrs : can(cidrhost(cidr, 0))])
    error_message = "allowed_cidrs must list at least one CIDR block, such as \"203.0.113.7/32\"."
  }
}

variable "join_token" {
  description = "The registry's join token, 64 hex characters (e.g. `openssl rand -hex 32`); pass it as TF_VAR_join_token, not on the command line. Ephemeral: Terraform writes it into Secret Manager and keeps it in neither the plan nor the state; the VMs fetch it at boot. See terraform/README.md."
  type        = string
  sensitive   = true
  ephemeral   = true

  validation {
    condition     = can(regex("^[0-9a-f]{64}$", var.join_token))
    error_message = "join_token must be 64 lowercase hexadecimal characters (32 random bytes)."
  }
}

variable "join_token_version" {
  description = "Raise it to store a new join_token: Terraform keeps no copy of the token to compare with, so this is how it learns of a change. The VMs read the latest version at boot."
  type        = number
  default     = 1
}

# The mesh: passed to terraform/modules/cluster as they are.

variable "name" {
  description = "Name of the deployment: prefix of the Google Cloud resource names and of the containers, and the io.hit6.project label."
  type        = string
  default     = "hit6"
}

variable "node_vms" {
  description = "Number of VMs. VM 1 runs the registry and nodes, the others nodes only."
  type        = number
  default     = 1
}

variable "nodes_per_vm" {
  description = "Node containers on each VM."
  type        = number
  default     = 3
}

variable "registry_port" {
  description = "Port of the registry on VM 1."
  type        = number
  default     = 8086
}

variable "node_port_range" {
  description = "Host ports of the nodes on each VM, \"FROM-TO\"."
  type        = string
  default     = "8087-8095"
}

variable "registry_image" {
  description = "Repository of the registry image, without tag, in a registry the VMs can pull from."
  type        = string
  default     = "hit6-mesh/registry"
}

variable "node_image" {
  description = "Repository of the node image, without tag, in a registry the VMs can pull from."
  type        = string
  default     = "hit6-mesh/node"
}

variable "image_tag" {
  description = "Tag of both images."
  type        = string
  default     = "0.1.0"
}

variable "orchestrator" {
  description = "\"docker\": each VM runs its own docker run lines. \"swarm\": the VMs form a Docker swarm (VM 1 its manager) and VM 1 deploys the mesh with the launcher, which needs launcher_url and launcher_sha256. See terraform/README.md."
  type        = string
  default     = "docker"
}

variable "registries" {
  description = "With orchestrator = \"swarm\": registry replicas on etcd, 1 (one registry), 3, 5 or 7, spread over the VMs, VM 1 first. Replica i is published on the module's registry_ports[i-1]."
  type        = number
  default     = 1
}

variable "etcd_image" {
  description = "With registries above 1: the etcd image, with its tag, that every VM pulls."
  type        = string
  default     = "gcr.io/etcd-development/etcd:v3.5.17"
}

variable "launcher_url" {
  description = "With orchestrator = \"swarm\": where VM 1 downloads the launcher (a Linux x86_64 binary, for the default image), http(s)://host/path."
  type        = string
  default     = null
}

variable "launcher_sha256" {
  description = "With orchestrator = \"swarm\": the SHA-256 of the file at launcher_url; VM 1 refuses any other."
  type        = string
  default     = null
}

variable "metrics_port" {
  description = "Host port on which VM 1 publishes the registry's /metrics, /health and status page, opened to allowed_cidrs only (never to the VMs or the internet); null (the default) publishes it nowhere."
  type        = number
  default     = null
}
