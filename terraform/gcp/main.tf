# terraform/gcp: the VMs of terraform/modules/cluster on Compute Engine. One
# static external address per VM is reserved first, so that every startup
# script can be rendered with the registry's address and its own VM's
# address; the module does everything else. The join token goes to Secret
# Manager, readable by the VMs' own service account only, and each VM
# fetches it at boot: neither its metadata nor the Terraform state holds it.
#
# With orchestrator = "swarm", VM 1 has a service account of its own: it
# reads the join token and adds the swarm's worker token to a second secret,
# which the other VMs, the workers, may only read.

module "cluster" {
  source = "../modules/cluster"

  project         = var.name
  registry_host   = google_compute_address.vm[0].address
  registry_port   = var.registry_port
  metrics_port    = var.metrics_port
  node_vms        = var.node_vms
  nodes_per_vm    = var.nodes_per_vm
  node_port_range = var.node_port_range
  registry_image  = var.registry_image
  node_image      = var.node_image
  image_tag       = var.image_tag
  join_token_secret = {
    store            = "gcp_secret_manager"
    name             = google_secret_manager_secret.join_token.id
    swarm_token_name = local.swarm ? google_secret_manager_secret.swarm_token[0].id : null
  }
  advertise_ips      = google_compute_address.vm[*].address
  ssh_user           = var.ssh_user
  orchestrator       = var.orchestrator
  registries         = var.registries
  etcd_image         = var.etcd_image
  launcher_url       = var.launcher_url
  launcher_sha256    = var.launcher_sha256
  private_ip_command = local.swarm ? "curl -fsS -H 'Metadata-Flavor: Google' http://metadata.google.internal/computeMetadata/v1/instance/network-interfaces/0/ip" : null
}

locals {
  swarm = var.orchestrator == "swarm"
}

resource "google_project_service" "secret_manager" {
  service            = "secretmanager.googleapis.com"
  disable_on_destroy = false # other things in the project may use it
}

resource "google_secret_manager_secret" "join_token" {
  secret_id = "${var.name}-join-token"

  replication {
    auto {}
  }

  depends_on = [google_project_service.secret_manager]
}

# Write-only: sent to Secret Manager, kept in neither the plan nor the state.
resource "google_secret_manager_secret_version" "join_token" {
  secret                 = google_secret_manager_secret.join_token.id
  secret_data_wo         = var.join_token
  secret_data_wo_version = var.join_token_version
}

# With swarm: where VM 1 leaves the worker token. Terraform writes only a
# placeholder version, write-only, so that neither the plan nor the state
# holds the versions VM 1 adds.
resource "google_secret_manager_secret" "swarm_token" {
  count     = local.swarm ? 1 : 0
  secret_id = "${var.name}-swarm-worker-token"

  replication {
    auto {}
  }

  depends_on = [google_project_service.secret_manager]
}

resource "google_secret_manager_secret_version" "swarm_token" {
  count                  = local.swarm ? 1 : 0
  secret                 = google_secret_manager_secret.swarm_token[0].id
  secret_data_wo         = "none"
  secret_data_wo_version = 1
}

# The VMs' identity: it may read the join token and nothing else (with swarm:
# the workers' identity, which may read the worker token and nothing else).
resource "google_service_account" "vm" {
  account_id   = "${var.name}-vm"
  display_name = "hit6-mesh VMs of ${var.name}"
}

resource "google_secret_manager_secret_iam_member" "vm" {
  secret_id = local.swarm ? google_secret_manager_secret.swarm_token[0].id : google_secret_manager_secret.join_token.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.vm.email}"
}

# With swarm, VM 1's identity: it reads the join token, for the launcher, and
# adds versions to the worker token's secret; nothing else.
resource "google_service_account" "manager" {
  count        = local.swarm ? 1 : 0
  account_id   = "${var.name}-manager"
  display_name = "hit6-mesh swarm manager (VM 1) of ${var.name}"
}

resource "google_secret_manager_secret_iam_member" "manager_reads_join_token" {
  count     = local.swarm ? 1 : 0
  secret_id = google_secret_manager_secret.join_token.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.manager[0].email}"
}

resource "google_secret_manager_secret_iam_member" "manager_writes_swarm_token" {
  count     = local.swarm ? 1 : 0
  secret_id = google_secret_manager_secret.swarm_token[0].id
  role      = "roles/secretmanager.secretVersionAdder"
  member    = "serviceAccount:${google_service_account.manager[0].email}"
}

resource "google_compute_address" "vm" {
  count        = var.node_vms
  name         = "${var.name}-vm${count.index + 1}"
  region       = var.region
  address_type = "EXTERNAL"
}

resource "google_compute_firewall" "mesh" {
  name          = "${var.name}-mesh"
  network       = var.network
  direction     = "INGRESS"
  source_ranges = distinct(concat(var.allowed_cidrs, [for a in google_compute_address.vm : "${a.address}/32"]))
  target_tags   = ["${var.name}-mesh"]

  allow {
    protocol = "tcp"
    ports    = concat(["22"], module.cluster.firewall_ports)
  }
}

# The registry's HTTP listener, from the operators' addresses only (not the VMs').
resource "google_compute_firewall" "metrics" {
  count         = var.metrics_port == null ? 0 : 1
  name          = "${var.name}-metrics"
  network       = var.network
  direction     = "INGRESS"
  source_ranges = var.allowed_cidrs
  target_tags   = ["${var.name}-mesh"]

  allow {
    protocol = "tcp"
    ports    = [tostring(var.metrics_port)]
  }
}

# With swarm, what the swarm needs between the VMs, from the VMs only (their
# tag, which matches their private ips).
resource "google_compute_firewall" "swarm" {
  count       = local.swarm ? 1 : 0
  name        = "${var.name}-swarm"
  network     = var.network
  direction   = "INGRESS"
  source_tags = ["${var.name}-mesh"]
  target_tags = ["${var.name}-mesh"]

  dynamic "allow" {
    for_each = distinct(module.cluster.swarm_ports[*].protocol)
    content {
      protocol = allow.value
      ports    = [for p in module.cluster.swarm_ports : tostring(p.port) if p.protocol == allow.value]
    }
  }
}

resource "google_compute_instance" "vm" {
  count        = var.node_vms
  name         = "${var.name}-vm${count.index + 1}"
  machine_type = var.machine_type
  zone         = var.zone
  tags         = ["${var.name}-mesh"]

  boot_disk {
    initialize_params {
      image = var.image
    }
  }

  network_interface {
    network = var.network

    access_config {
      nat_ip = google_compute_address.vm[count.index].address
    }
  }

  service_account {
    email  = local.swarm && count.index == 0 ? google_service_account.manager[0].email : google_service_account.vm.email
    scopes = ["cloud-platform"] # what it may do is what its roles allow: read one secret (VM 1 with swarm: and write another)
  }

  # A changed script replaces the VM (metadata_startup_script forces it),
  # rather than waiting for a reboot that may never come.
  metadata_startup_script = module.cluster.startup_scripts[count.index]
  metadata                = var.ssh_public_key == null ? {} : { ssh-keys = "${var.ssh_user}:${var.ssh_public_key}" }

  # The script reads the token at boot.
  depends_on = [
    google_secret_manager_secret_version.join_token, google_secret_manager_secret_iam_member.vm,
    google_secret_manager_secret_version.swarm_token, google_secret_manager_secret_iam_member.manager_reads_join_token,
    google_secret_manager_secret_iam_member.manager_writes_swarm_token,
  ]

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
