# Every value here ends up in a shell script, so each one is checked against a
# strict pattern: none can carry quotes, spaces or other shell syntax.

variable "project" {
  description = "Name of the deployment: prefix of container names, name of the Docker network on each VM, and value of the io.hit6.project label."
  type        = string
  default     = "hit6"

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9_.-]{0,39}$", var.project))
    error_message = "project must be 1-40 characters of a-z, 0-9, '_', '.' or '-', starting with a letter or digit."
  }
}

variable "registry_host" {
  description = "Address at which every node, on every VM, reaches the registry: normally the public ip of the registry VM (VM 1)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9]([A-Za-z0-9.:-]*[A-Za-z0-9])?$", var.registry_host))
    error_message = "registry_host must be an ip address or a host name (letters, digits, '.', ':' and '-')."
  }
}

variable "registry_port" {
  description = "Host port on which the registry VM publishes the registry (the lab uses 8086)."
  type        = number
  default     = 8086

  validation {
    condition     = var.registry_port == floor(var.registry_port) && var.registry_port >= 1 && var.registry_port <= 65535
    error_message = "registry_port must be a whole number from 1 to 65535."
  }

  validation {
    condition = try(
      var.registry_port < tonumber(split("-", var.node_port_range)[0]) || var.registry_port > tonumber(split("-", var.node_port_range)[1]),
      true, # a malformed range is reported by node_port_range itself
    )
    error_message = "registry_port must lie outside node_port_range: the registry VM publishes both."
  }
}

variable "node_vms" {
  description = "Number of VMs that run nodes. VM 1 also runs the registry; VMs 2 and up run only nodes."
  type        = number
  default     = 1

  validation {
    condition     = var.node_vms == floor(var.node_vms) && var.node_vms >= 1 && var.node_vms <= 100
    error_message = "node_vms must be a whole number from 1 to 100."
  }
}

variable "nodes_per_vm" {
  description = "Number of node containers on each VM, published on the first ports of node_port_range."
  type        = number
  default     = 3

  validation {
    condition     = var.nodes_per_vm == floor(var.nodes_per_vm) && var.nodes_per_vm >= 1
    error_message = "nodes_per_vm must be a whole number of at least 1."
  }

  validation {
    condition = try(
      var.nodes_per_vm <= tonumber(split("-", var.node_port_range)[1]) - tonumber(split("-", var.node_port_range)[0]) + 1,
      true, # a malformed range is reported by node_port_range itself
    )
    error_message = "nodes_per_vm is larger than node_port_range holds: each node on a VM needs its own host port (PUERTO_EXT). Widen node_port_range or lower nodes_per_vm."
  }
}

variable "node_port_range" {
  description = "Host ports for the nodes, \"FROM-TO\" inclusive. Node i of each VM is published on FROM+i-1 and advertises it as PUERTO_EXT; the cloud firewall opens the whole range."
  type        = string
  default     = "8087-8095"

  validation {
    condition = can(regex("^[0-9]{1,5}-[0-9]{1,5}$", var.node_port_range)) && try(
      tonumber(split("-", var.node_port_range)[0]) >= 1 &&
      tonumber(split("-", var.node_port_range)[0]) <= tonumber(split("-", var.node_port_range)[1]) &&
      tonumber(split("-", var.node_port_range)[1]) <= 65535,
      false,
    )
    error_message = "node_port_range must be \"FROM-TO\" with 1 <= FROM <= TO <= 65535, e.g. \"8087-8095\"."
  }
}

variable "registry_image" {
  description = "Repository of the registry image, without a tag. The VMs pull it, so it must be in a registry they can reach, or already loaded on them."
  type        = string
  default     = "hit6-mesh/registry"

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9._/:-]*$", var.registry_image)) && !can(regex(":[^/]*$", var.registry_image))
    error_message = "registry_image must be an image repository such as ghcr.io/acme/hit6-registry, without a tag (set image_tag)."
  }
}

variable "node_image" {
  description = "Repository of the node image, without a tag. The VMs pull it, so it must be in a registry they can reach, or already loaded on them."
  type        = string
  default     = "hit6-mesh/node"

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9._/:-]*$", var.node_image)) && !can(regex(":[^/]*$", var.node_image))
    error_message = "node_image must be an image repository such as ghcr.io/acme/hit6-node, without a tag (set image_tag)."
  }
}

variable "image_tag" {
  description = "Tag of both images: the workspace version that built them (`launcher build` tags <version>)."
  type        = string
  default     = "0.1.0"

  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.image_tag))
    error_message = "image_tag must be a Docker tag: letters, digits, '_', '.' and '-', at most 128 characters."
  }
}

variable "advertise_ips" {
  description = "Where the advertised ip comes from, option 1: the public ip of each VM, in order (VM 1 first), written into the scripts as IP_EXT. Use it when the addresses are known before the VMs boot (static addresses). Leave empty to use advertise_ip_command."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for ip in var.advertise_ips : can(cidrhost("${ip}/${strcontains(ip, ":") ? 128 : 32}", 0))])
    error_message = "Every entry of advertise_ips must be an IPv4 or IPv6 address."
  }

  validation {
    condition     = length(var.advertise_ips) == 0 || length(var.advertise_ips) == var.node_vms
    error_message = "advertise_ips must hold one address per VM (node_vms of them), or be empty to use advertise_ip_command."
  }

  validation {
    condition     = length(var.advertise_ips) > 0 || var.advertise_ip_command != null
    error_message = "Say where the advertised ip comes from: set advertise_ips, or advertise_ip_command."
  }
}

variable "advertise_ip_command" {
  description = "Where the advertised ip comes from, option 2: a shell command that prints the VM's public ip when run on the VM (typically a cloud metadata query). The script stores its output in $PUBLIC_IP, which the docker commands then use. Ignored when advertise_ips is set."
  type        = string
  default     = null

  validation {
    condition     = var.advertise_ip_command == null || try(length(trimspace(var.advertise_ip_command)) > 0 && !strcontains(var.advertise_ip_command, "\n"), false)
    error_message = "advertise_ip_command must be a one-line shell command."
  }
}

variable "log_format" {
  description = "LOG_FORMAT of the registry and the nodes: json (one object per line, as the launcher uses) or text."
  type        = string
  default     = "json"

  validation {
    condition     = contains(["json", "text"], var.log_format)
    error_message = "log_format must be \"json\" or \"text\"."
  }
}

variable "docker_install_command" {
  description = "Shell command that installs and starts Docker on a VM that has none."
  type        = string
  default     = "curl -fsSL https://get.docker.com | sh"

  validation {
    condition     = length(trimspace(var.docker_install_command)) > 0 && !strcontains(var.docker_install_command, "\n")
    error_message = "docker_install_command must be a one-line shell command."
  }
}

variable "ssh_user" {
  description = "User that logs in to the VMs over ssh, for the ssh_mesh_command output; null leaves that output null."
  type        = string
  default     = null

  validation {
    condition     = var.ssh_user == null || can(regex("^[a-z_][a-z0-9_-]{0,31}$", var.ssh_user))
    error_message = "ssh_user must be a user name: up to 32 characters of a-z, 0-9, '_' or '-', not starting with a digit or '-'."
  }
}

variable "join_token" {
  description = "The registry's join token (64 hex characters, e.g. from `openssl rand -hex 32`): only nodes holding it may register, and they authenticate and encrypt everything between them. Handed to the containers through an env file the script writes into secrets_dir (mode 0600), never on a command line; but the script itself holds it, and so does the instance's metadata: where the cloud has a secret store, give join_token_secret instead. With neither, anyone who can reach the registry may join."
  type        = string
  default     = null
  sensitive   = true

  validation {
    condition     = var.join_token == null || can(regex("^[0-9a-f]{64}$", var.join_token))
    error_message = "join_token must be 64 lowercase hexadecimal characters (32 random bytes), or null."
  }
}

variable "join_token_secret" {
  description = <<-EOT
    Where each VM fetches the join token at boot, with its own cloud credentials, so that the startup script (and so the instance's metadata) holds only the secret's name. Give this or join_token, not both.
    store = "gcp_secret_manager": name is the secret, projects/PROJECT/secrets/SECRET; the VM's service account needs roles/secretmanager.secretAccessor on it.
    store = "aws_ssm": name is a SecureString parameter, /PATH/NAME, in region; the instance profile needs ssm:GetParameter on it (and IMDSv2).
    endpoint replaces the store's public API (a private endpoint) and metadata_endpoint the VM's metadata server, each as scheme://host[:port].
    swarm_token_name (orchestrator = "swarm" with more than one VM): a second secret or parameter of the same store, where VM 1 leaves the swarm's worker join token for the other VMs. VM 1's identity needs to add versions to it (roles/secretmanager.secretVersionAdder; ssm:PutParameter), the others' to read it; it holds a placeholder (any value that is not a worker token, e.g. "none") until VM 1 writes it.
  EOT
  type = object({
    store             = string
    name              = string
    region            = optional(string)
    endpoint          = optional(string)
    metadata_endpoint = optional(string)
    swarm_token_name  = optional(string)
  })
  default = null

  validation {
    condition     = var.join_token_secret == null || contains(["gcp_secret_manager", "aws_ssm"], try(var.join_token_secret.store, ""))
    error_message = "join_token_secret.store must be \"gcp_secret_manager\" or \"aws_ssm\"."
  }

  validation {
    condition = var.join_token_secret == null || (
      try(var.join_token_secret.store, "") == "gcp_secret_manager"
      ? can(regex("^projects/[A-Za-z0-9-]+/secrets/[A-Za-z0-9_-]+$", var.join_token_secret.name))
      : can(regex("^/?[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$", var.join_token_secret.name)) && can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]+$", var.join_token_secret.region))
    )
    error_message = "join_token_secret: a gcp_secret_manager name is projects/PROJECT/secrets/SECRET; an aws_ssm name is a parameter path of letters, digits, '_', '.', '-' and '/', with its region (such as eu-west-1)."
  }

  validation {
    condition = var.join_token_secret == null || alltrue([
      for url in [try(var.join_token_secret.endpoint, null), try(var.join_token_secret.metadata_endpoint, null)] :
      url == null || can(regex("^https?://([A-Za-z0-9.-]+|\\[[0-9A-Fa-f:]+\\])(:[0-9]{1,5})?$", url))
    ])
    error_message = "join_token_secret.endpoint and metadata_endpoint must be scheme://host[:port], such as https://secretmanager.googleapis.com."
  }

  validation {
    condition = try(var.join_token_secret.swarm_token_name, null) == null || try(
      var.join_token_secret.swarm_token_name != var.join_token_secret.name && (
        var.join_token_secret.store == "gcp_secret_manager"
        ? can(regex("^projects/[A-Za-z0-9-]+/secrets/[A-Za-z0-9_-]+$", var.join_token_secret.swarm_token_name))
        : can(regex("^/?[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$", var.join_token_secret.swarm_token_name))
      ),
      false,
    )
    error_message = "join_token_secret.swarm_token_name must be a secret or parameter name of the same form as name (projects/PROJECT/secrets/SECRET, or a parameter path), and not name itself: the workers may read it, and only VM 1 may write it."
  }

  validation {
    condition     = var.join_token_secret == null || var.join_token == null
    error_message = "give join_token or join_token_secret, not both: the token is either in the startup script or fetched at boot."
  }
}

variable "secrets_dir" {
  description = "Directory on each VM where the startup script keeps the join token's env file, readable by root only."
  type        = string
  default     = "/etc/hit6"

  validation {
    condition     = can(regex("^/[A-Za-z0-9._/-]*$", var.secrets_dir))
    error_message = "secrets_dir must be an absolute path of letters, digits, '.', '_', '-' and '/'."
  }
}

variable "orchestrator" {
  description = <<-EOT
    How the VMs start the mesh. "docker": each VM runs its own plain docker run lines (the registry on VM 1, nodes_per_vm nodes on every VM). "swarm": the VMs form a Docker swarm, VM 1 its manager and the others workers, and VM 1 runs `launcher up --runtime swarm`, which spreads node_vms * nodes_per_vm nodes over the swarm's hosts. Swarm needs launcher_url and launcher_sha256, private_ips or private_ip_command, and with more than one VM join_token_secret.swarm_token_name. See terraform/README.md.
  EOT
  type        = string
  default     = "docker"

  validation {
    condition     = contains(["docker", "swarm"], var.orchestrator)
    error_message = "orchestrator must be \"docker\" (each VM runs its docker run lines) or \"swarm\" (the VMs form a swarm and VM 1 runs the launcher)."
  }

  validation {
    condition     = var.orchestrator != "swarm" || (var.launcher_url != null && var.launcher_sha256 != null)
    error_message = "orchestrator = \"swarm\" needs launcher_url and launcher_sha256: VM 1 downloads the launcher, checks it, and deploys the mesh with it."
  }

  validation {
    condition     = var.orchestrator == "swarm" || (var.launcher_url == null && var.launcher_sha256 == null)
    error_message = "launcher_url and launcher_sha256 are for orchestrator = \"swarm\" only: with \"docker\" the VMs run plain docker run lines and no launcher."
  }

  validation {
    condition     = var.orchestrator != "swarm" || length(var.private_ips) > 0 || var.private_ip_command != null
    error_message = "orchestrator = \"swarm\" needs each VM's private ip, on which the swarm's manager listens and its members talk: set private_ips, or private_ip_command."
  }

  validation {
    condition     = var.orchestrator != "swarm" || var.node_vms == 1 || try(var.join_token_secret.swarm_token_name, null) != null
    error_message = "orchestrator = \"swarm\" with more than one VM needs join_token_secret with swarm_token_name: VM 1 leaves the workers' swarm join token there, since it exists only once VM 1 has made the swarm."
  }
}

variable "registries" {
  description = "With orchestrator = \"swarm\": how many registry replicas, each with an etcd member (`launcher up --registries`): 1 (a single registry, the default), 3, 5 or 7. The launcher puts etcd-i and registry-i on the i-th host of the swarm, VM 1 first, so that with as many VMs the mesh outlives any one VM. Replica i is published on registry_ports[i-1] of its host: registry_port and the next ports outside node_port_range."
  type        = number
  default     = 1

  validation {
    condition     = contains([1, 3, 5, 7], var.registries)
    error_message = "registries must be 1, 3, 5 or 7: an etcd quorum of an odd number of members, at most 7."
  }

  validation {
    condition     = var.registries == 1 || var.orchestrator == "swarm"
    error_message = "registries above 1 needs orchestrator = \"swarm\": the launcher starts the etcd members and the replicas."
  }

  validation {
    condition = try(
      length([
        for p in range(var.registry_port, min(65536, var.registry_port + var.registries + tonumber(split("-", var.node_port_range)[1]) - tonumber(split("-", var.node_port_range)[0]) + 1)) :
        p if p < tonumber(split("-", var.node_port_range)[0]) || p > tonumber(split("-", var.node_port_range)[1])
      ]) >= var.registries,
      true, # a malformed range is reported by node_port_range itself
    )
    error_message = "the registry replicas need registries ports from registry_port up, outside node_port_range and at most 65535: choose a lower registry_port."
  }
}

variable "etcd_image" {
  description = "With registries above 1: the etcd image of the members, with its tag, which every VM pulls (it must be in a registry they can reach, or loaded on every VM)."
  type        = string
  default     = "gcr.io/etcd-development/etcd:v3.5.17"

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9._/:-]*:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.etcd_image))
    error_message = "etcd_image must be an image with its tag, such as gcr.io/etcd-development/etcd:v3.5.17."
  }
}

variable "launcher_url" {
  description = "With orchestrator = \"swarm\": where VM 1 downloads the launcher, a Linux binary for its architecture (e.g. a release asset), as http(s)://host[:port]/path. VM 1 installs it as /usr/local/bin/launcher only if its SHA-256 is launcher_sha256."
  type        = string
  default     = null

  validation {
    condition     = var.launcher_url == null || can(regex("^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?/[A-Za-z0-9._~%+/-]+$", var.launcher_url))
    error_message = "launcher_url must be http(s)://host[:port]/path, the path of letters, digits and '._~%+/-' (no query string)."
  }
}

variable "launcher_sha256" {
  description = "With orchestrator = \"swarm\": the SHA-256 of the file at launcher_url (`sha256sum launcher`), 64 lowercase hex characters. VM 1 refuses any other file."
  type        = string
  default     = null

  validation {
    condition     = var.launcher_sha256 == null || can(regex("^[0-9a-f]{64}$", var.launcher_sha256))
    error_message = "launcher_sha256 must be 64 lowercase hexadecimal characters, as sha256sum prints them."
  }
}

variable "private_ips" {
  description = "With orchestrator = \"swarm\", where each VM's private ip comes from, option 1: the address of each VM in its network, in order (VM 1 first). VM 1's swarm listens and advertises on it; the others advertise theirs when they join. Leave empty to use private_ip_command. Ignored with \"docker\"."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for ip in var.private_ips : can(regex("^[0-9]{1,3}(\\.[0-9]{1,3}){3}$", ip)) && can(cidrhost("${ip}/32", 0))])
    error_message = "Every entry of private_ips must be an IPv4 address."
  }

  validation {
    condition     = length(var.private_ips) == 0 || length(var.private_ips) == var.node_vms
    error_message = "private_ips must hold one address per VM (node_vms of them), or be empty to use private_ip_command."
  }
}

variable "private_ip_command" {
  description = "With orchestrator = \"swarm\", where each VM's private ip comes from, option 2: a one-line shell command that prints it when run on the VM (a metadata query). The script keeps its output in $PRIVATE_IP. Ignored when private_ips is set."
  type        = string
  default     = null

  validation {
    condition     = var.private_ip_command == null || try(length(trimspace(var.private_ip_command)) > 0 && !strcontains(var.private_ip_command, "\n"), false)
    error_message = "private_ip_command must be a one-line shell command."
  }
}

variable "metrics_port" {
  description = "Host port on which VM 1 publishes the registry's HTTP listener (/metrics, /health, the status page; 8081 in its container), or null (the default) to publish it nowhere. The cloud roots open it to allowed_cidrs only, never to the VMs or the internet by default. With swarm, the launcher publishes it (`up --http-port`) and draws the status page's read token (`launcher token --http` on VM 1); with docker, the status page has no token, so it serves /metrics and /health only."
  type        = number
  default     = null

  validation {
    condition     = var.metrics_port == null || try(var.metrics_port == floor(var.metrics_port) && var.metrics_port >= 1 && var.metrics_port <= 65535, false)
    error_message = "metrics_port must be a whole number from 1 to 65535, or null."
  }

  validation {
    condition = var.metrics_port == null || try(
      var.metrics_port != var.registry_port && (var.metrics_port < tonumber(split("-", var.node_port_range)[0]) || var.metrics_port > tonumber(split("-", var.node_port_range)[1])),
      false
    )
    error_message = "metrics_port must differ from registry_port and lie outside node_port_range."
  }
}
