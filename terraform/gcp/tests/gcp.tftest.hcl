# terraform/gcp against a mocked Google provider: nothing is created and no
# credentials are needed, but the provider binary must be installed (it gives
# the schema), so this runs only where it is at hand: see tests/tests/terraform.rs.

mock_provider "google" {
  mock_resource "google_compute_address" {
    defaults = { address = "203.0.113.10" }
  }

  mock_resource "google_secret_manager_secret" {
    defaults = { id = "projects/hit6-test/secrets/hit6-join-token" }
  }

  mock_resource "google_service_account" {
    defaults = { email = "hit6-vm@hit6-test.iam.gserviceaccount.com" }
  }
}

variables {
  allowed_cidrs  = ["0.0.0.0/0"]
  join_token     = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
  gcp_project    = "hit6-test"
  node_vms       = 2
  ssh_public_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGhpdDYtbWVzaC10ZXN0LWtleQ test"
}

run "two_vms_with_the_module_scripts" {
  override_resource {
    target = google_compute_address.vm[1]
    values = { address = "203.0.113.11" }
  }

  assert {
    condition     = length(google_compute_instance.vm) == 2 && length(google_compute_address.vm) == 2
    error_message = "one instance and one static address per VM"
  }

  assert {
    condition     = google_compute_instance.vm[0].metadata_startup_script == module.cluster.startup_scripts[0] && google_compute_instance.vm[1].metadata_startup_script == module.cluster.startup_scripts[1]
    error_message = "each instance boots with its VM's script"
  }

  assert {
    condition     = google_compute_instance.vm[1].network_interface[0].access_config[0].nat_ip == "203.0.113.11"
    error_message = "each instance gets its reserved address"
  }

  assert {
    condition     = strcontains(google_compute_instance.vm[0].metadata_startup_script, "-p 8086:8080") && !strcontains(google_compute_instance.vm[1].metadata_startup_script, "hit6-registry")
    error_message = "the registry runs on VM 1 only"
  }

  assert {
    condition = alltrue([
      for port in [8087, 8088, 8089] :
      strcontains(google_compute_instance.vm[1].metadata_startup_script, "-p ${port}:8080 -e PUERTO_EXT=${port} -e IP_EXT=203.0.113.11 ") &&
      strcontains(google_compute_instance.vm[0].metadata_startup_script, "-p ${port}:8080 -e PUERTO_EXT=${port} -e IP_EXT=203.0.113.10 ")
    ])
    error_message = "the nodes of each VM advertise that VM's address and their PUERTO_EXT"
  }

  assert {
    condition     = strcontains(google_compute_instance.vm[1].metadata_startup_script, " hit6-mesh/node:0.1.0 203.0.113.10 8086")
    error_message = "the nodes of VM 2 register with VM 1"
  }

  assert {
    condition = alltrue([
      for vm in google_compute_instance.vm :
      !strcontains(vm.metadata_startup_script, "0123456789abcdef0123456789abcdef") &&
      strcontains(vm.metadata_startup_script, "'https://secretmanager.googleapis.com/v1/projects/hit6-test/secrets/hit6-join-token/versions/latest:access'") &&
      strcontains(vm.metadata_startup_script, "&& hit6-join-token /etc/hit6/hit6.env")
    ])
    error_message = "the scripts fetch the token from Secret Manager at boot and do not hold it"
  }

  assert {
    condition = (
      google_secret_manager_secret_version.join_token.secret_data_wo == null &&
      google_secret_manager_secret_iam_member.vm.role == "roles/secretmanager.secretAccessor" &&
      google_secret_manager_secret_iam_member.vm.member == "serviceAccount:hit6-vm@hit6-test.iam.gserviceaccount.com" &&
      google_compute_instance.vm[1].service_account[0].email == "hit6-vm@hit6-test.iam.gserviceaccount.com"
    )
    error_message = "the token is in Secret Manager, not in the state, and the VMs' service account alone may read it"
  }

  assert {
    condition     = google_compute_instance.vm[0].metadata["ssh-keys"] == "hit6:${var.ssh_public_key}" && google_compute_instance.vm[0].machine_type == "e2-small"
    error_message = "the ssh key and the machine type"
  }

  assert {
    condition     = tolist(google_compute_firewall.mesh.allow)[0].ports == tolist(["22", "8086", "8087-8095"]) && google_compute_firewall.mesh.target_tags == toset(["hit6-mesh"])
    error_message = "the firewall opens ssh, the registry and the node range to the VMs"
  }

  assert {
    condition     = google_compute_firewall.mesh.source_ranges == toset(["0.0.0.0/0", "203.0.113.10/32", "203.0.113.11/32"])
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
    condition     = output.mesh_command == "for ip in 203.0.113.10 203.0.113.11; do ssh hit6@$ip sudo hit6-mesh-status; done" && output.expected_greetings == 15
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
    target = google_compute_address.vm[1]
    values = { address = "203.0.113.11" }
  }

  override_resource {
    target = google_secret_manager_secret.swarm_token[0]
    values = { id = "projects/hit6-test/secrets/hit6-swarm-worker-token" }
  }

  override_resource {
    target = google_service_account.manager[0]
    values = { email = "hit6-manager@hit6-test.iam.gserviceaccount.com" }
  }

  assert {
    condition = (
      google_compute_instance.vm[0].service_account[0].email == "hit6-manager@hit6-test.iam.gserviceaccount.com" &&
      google_compute_instance.vm[1].service_account[0].email == "hit6-vm@hit6-test.iam.gserviceaccount.com"
    )
    error_message = "VM 1 runs as the manager's service account, the workers as the VMs'"
  }

  assert {
    condition = (
      google_secret_manager_secret_iam_member.manager_writes_swarm_token[0].secret_id == "projects/hit6-test/secrets/hit6-swarm-worker-token" &&
      google_secret_manager_secret_iam_member.manager_writes_swarm_token[0].role == "roles/secretmanager.secretVersionAdder" &&
      google_secret_manager_secret_iam_member.manager_writes_swarm_token[0].member == "serviceAccount:hit6-manager@hit6-test.iam.gserviceaccount.com" &&
      google_secret_manager_secret_iam_member.manager_reads_join_token[0].secret_id == "projects/hit6-test/secrets/hit6-join-token" &&
      google_secret_manager_secret_iam_member.manager_reads_join_token[0].role == "roles/secretmanager.secretAccessor" &&
      google_secret_manager_secret_iam_member.vm.secret_id == "projects/hit6-test/secrets/hit6-swarm-worker-token" &&
      google_secret_manager_secret_iam_member.vm.role == "roles/secretmanager.secretAccessor" &&
      google_secret_manager_secret_version.swarm_token[0].secret_data_wo == null
    )
    error_message = "VM 1 alone may add the worker token (and read the join token); the workers may only read the worker token; the state holds neither"
  }

  assert {
    condition = (
      google_compute_firewall.swarm[0].source_tags == toset(["hit6-mesh"]) && google_compute_firewall.swarm[0].target_tags == toset(["hit6-mesh"]) &&
      jsonencode({ for rule in google_compute_firewall.swarm[0].allow : rule.protocol => rule.ports }) == jsonencode({ tcp = ["2377", "7946"], udp = ["7946", "4789"] }) &&
      tolist(google_compute_firewall.mesh.allow)[0].ports == tolist(["22", "8086", "8087-8095"])
    )
    error_message = "the swarm's ports are open between the VMs only (their tag), the published ports as with docker"
  }

  assert {
    condition = (
      strcontains(google_compute_instance.vm[0].metadata_startup_script, "docker swarm init --advertise-addr \"$PRIVATE_IP\"") &&
      strcontains(google_compute_instance.vm[0].metadata_startup_script, "'https://secretmanager.googleapis.com/v1/projects/hit6-test/secrets/hit6-swarm-worker-token:addVersion'") &&
      strcontains(google_compute_instance.vm[0].metadata_startup_script, "exec launcher -p hit6 up --runtime swarm --publish --nodes 6 ") &&
      strcontains(google_compute_instance.vm[1].metadata_startup_script, "elif value=\"$(hit6-swarm-token get)\"; then") &&
      strcontains(google_compute_instance.vm[1].metadata_startup_script, "computeMetadata/v1/instance/network-interfaces/0/ip") &&
      !strcontains(google_compute_instance.vm[1].metadata_startup_script, "launcher -p")
    )
    error_message = "VM 1 makes the swarm, leaves the worker token and runs the launcher; VM 2 joins, its private ip from the metadata server"
  }

  assert {
    condition     = terraform_data.swarm_manager.input == sha256(google_compute_instance.vm[0].metadata_startup_script)
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
      tolist(google_compute_firewall.mesh.allow)[0].ports == tolist(["22", "8086", "8096", "8097", "8087-8095"]) &&
      strcontains(google_compute_instance.vm[0].metadata_startup_script, " --registries 3 --etcd-image gcr.io/etcd-development/etcd:v3.5.17 ") &&
      strcontains(google_compute_instance.vm[1].metadata_startup_script, "docker pull gcr.io/etcd-development/etcd:v3.5.17 ||")
    )
    error_message = "each replica's port is open, VM 1 starts the replicas, and every VM pulls the etcd image"
  }
}

run "a_metrics_port_is_opened_to_allowed_cidrs_only" {
  override_resource {
    target = google_compute_address.vm[1]
    values = { address = "203.0.113.11" }
  }

  variables {
    allowed_cidrs = ["198.51.100.0/24"]
    metrics_port  = 9180
  }

  assert {
    condition     = length(google_compute_firewall.metrics) == 1 && toset(google_compute_firewall.metrics[0].source_ranges) == toset(["198.51.100.0/24"])
    error_message = "the registry's HTTP listener is open to allowed_cidrs, and not to the VMs"
  }

  assert {
    condition     = [for rule in google_compute_firewall.metrics[0].allow : rule.ports] == [["9180"]] && !contains(google_compute_firewall.mesh.allow[0].ports, "9180")
    error_message = "only the metrics rule opens 9180"
  }

  assert {
    condition     = strcontains(google_compute_instance.vm[0].metadata_startup_script, " -p 9180:8081 ")
    error_message = "VM 1 publishes the registry's HTTP listener"
  }
}
