# terraform/gcp: the VMs of terraform/modules/cluster on Compute Engine. One
# static external address per VM is reserved first, so that every startup
# script can be rendered with the registry's address and its own VM's
# address; the module does everything else. The join token goes to Secret
# Manager, readable by the VMs' own service account only, and each VM
# fetches it at boot: neither its metadata nor the Terraform state holds it.

module "cluster" {
  source = "../modules/cluster"

  project         = var.name
  registry_host   = google_compute_address.vm[0].address
  registry_port   = var.registry_port
  node_vms        = var.node_vms
  nodes_per_vm    = var.nodes_per_vm
  node_port_range = var.node_port_range
  registry_image  = var.registry_image
  node_image      = var.node_image
  image_tag       = var.image_tag
  join_token_secret = {
    store = "gcp_secret_manager"
    name  = google_secret_manager_secret.join_token.id
  }
  advertise_ips = google_compute_address.vm[*].address
  ssh_user      = var.ssh_user
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

# The VMs' identity: it may read the join token and nothing else.
resource "google_service_account" "vm" {
  account_id   = "${var.name}-vm"
  display_name = "hit6-mesh VMs of ${var.name}"
}

resource "google_secret_manager_secret_iam_member" "vm" {
  secret_id = google_secret_manager_secret.join_token.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.vm.email}"
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
    email  = google_service_account.vm.email
    scopes = ["cloud-platform"] # what it may do is what its roles allow: read one secret
  }

  # A changed script replaces the VM (metadata_startup_script forces it),
  # rather than waiting for a reboot that may never come.
  metadata_startup_script = module.cluster.startup_scripts[count.index]
  metadata                = var.ssh_public_key == null ? {} : { ssh-keys = "${var.ssh_user}:${var.ssh_public_key}" }

  # The script reads the token at boot.
  depends_on = [google_secret_manager_secret_version.join_token, google_secret_manager_secret_iam_member.vm]
}
