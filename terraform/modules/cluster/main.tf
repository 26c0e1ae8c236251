# terraform/modules/cluster: everything the VMs of a hit6-mesh deployment run,
# rendered from variables alone. No provider and no resource: the cloud roots
# (terraform/gcp, terraform/aws) hand each VM its startup script, and the tests
# render and run it offline.
#
# VM 1 runs the registry, published on registry_port, and nodes_per_vm nodes;
# VMs 2..node_vms run nodes_per_vm nodes each. On every VM node i (from 1) is
# published on port FROM+i-1 of node_port_range, with PUERTO_EXT set to that
# port and IP_EXT to the VM's public ip, and registers with
# registry_host:registry_port, so peers on any VM reach it through the VM's
# public ip and its published port, as in the lab.
#
# With orchestrator = "swarm" the VMs instead form a Docker swarm on their
# private ips, VM 1 its manager, and VM 1 runs the launcher, which places the
# registry and node_vms * nodes_per_vm nodes on the swarm's hosts itself.

terraform {
  required_version = ">= 1.9" # validation rules that refer to other variables
}

locals {
  port_from  = tonumber(split("-", var.node_port_range)[0])
  port_to    = tonumber(split("-", var.node_port_range)[1])
  node_ports = [for i in range(var.nodes_per_vm) : local.port_from + i]

  # Installed on every VM by the startup script.
  mesh_command = "hit6-mesh-status"

  registry_ref = "${var.registry_image}:${var.image_tag}"
  node_ref     = "${var.node_image}:${var.image_tag}"

  # Where the registry replicas are published, as the launcher picks them on
  # a fresh VM: registry_port, then the next ports outside the node range.
  registry_candidates = range(var.registry_port, min(65536, var.registry_port + var.registries + local.port_to - local.port_from + 1))
  registry_ports      = slice([for p in local.registry_candidates : p if p < local.port_from || p > local.port_to], 0, var.registries)
  replicated          = var.registries > 1

  node_count         = var.node_vms * var.nodes_per_vm
  expected_greetings = local.node_count * (local.node_count - 1) / 2

  # What the docker commands put in IP_EXT on VM v (from 0): the literal
  # address, or the $PUBLIC_IP the script reads from advertise_ip_command.
  ip_ext = [for v in range(var.node_vms) : length(var.advertise_ips) > 0 ? var.advertise_ips[v] : "\"$PUBLIC_IP\""]

  labels = "--label io.hit6.project=${var.project}"

  # The join token reaches the containers in an env file (docker run
  # --env-file), so it is in no command line: printf is a shell builtin.
  # The file is written from the token itself (join_token), or by
  # hit6-join-token, which fetches it from the secret store at boot.
  secured    = var.join_token != null || var.join_token_secret != null
  token_file = "${var.secrets_dir}/${var.project}.env"
  token_env  = local.secured ? "--env-file ${local.token_file}" : ""
  token_write = (
    var.join_token_secret != null ? "${local.join_token_command} ${local.token_file}" :
    var.join_token != null ? "(umask 077 && printf '%s\\n' 'HIT6_JOIN_TOKEN=${var.join_token}' >${local.token_file})" : null
  )
  token_command = local.secured ? ["install -d -m 700 ${var.secrets_dir} && ${local.token_write}"] : []

  # Installed by the startup script when the token comes from a secret store.
  # With swarm, only VM 1 needs it: the launcher hands it to the containers.
  join_token_command = "hit6-join-token"
  join_token_script = var.join_token_secret == null ? null : templatefile("${path.module}/templates/join_token.sh.tftpl", {
    store  = var.join_token_secret.store
    name   = var.join_token_secret.name
    region = var.join_token_secret.region
    endpoint = coalesce(var.join_token_secret.endpoint, var.join_token_secret.store == "gcp_secret_manager"
    ? "https://secretmanager.googleapis.com" : "https://ssm.${var.join_token_secret.region}.amazonaws.com")
    metadata_endpoint = coalesce(var.join_token_secret.metadata_endpoint, var.join_token_secret.store == "gcp_secret_manager"
    ? "http://metadata.google.internal" : "http://169.254.169.254")
  })

  # Each line first checks whether what it makes is already there, so that a
  # script run again (GCP runs it at every boot) leaves a running deployment
  # alone and finishes an interrupted one.
  network_command = "docker network inspect ${var.project} >/dev/null 2>&1 || docker network create ${local.labels} ${var.project}"

  registry_command = join(" ", compact([
    "docker container inspect ${var.project}-registry >/dev/null 2>&1 ||",
    "docker run -d --name ${var.project}-registry --network ${var.project} --restart unless-stopped",
    "${local.labels} --label io.hit6.role=registry --label io.hit6.index=0",
    "-p ${var.registry_port}:8080 -e LOG_FORMAT=${var.log_format}",
    var.metrics_port == null ? "" : "-p ${var.metrics_port}:8081",
    local.token_env,
    local.registry_ref,
  ]))

  # orchestrator = "swarm": the swarm talks on the VMs' private ips, VM 1's
  # manager listens on swarm_port, and the workers learn VM 1's address with
  # the worker token (see hit6-swarm-token), so no VM's script holds another's.
  swarm      = var.orchestrator == "swarm"
  swarm_port = 2377
  # What the swarm needs open between the VMs, beyond the published ports.
  swarm_ports = local.swarm ? [
    { protocol = "tcp", port = local.swarm_port, purpose = "swarm management (the workers to the manager)" },
    { protocol = "tcp", port = 7946, purpose = "swarm node discovery" },
    { protocol = "udp", port = 7946, purpose = "swarm node discovery" },
    { protocol = "udp", port = 4789, purpose = "overlay network traffic (VXLAN)" },
  ] : []
  # The VM's own addresses, as the script's shell uses them inside double
  # quotes: literal, or what the script read into $PUBLIC_IP / $PRIVATE_IP.
  public_ip  = [for v in range(var.node_vms) : length(var.advertise_ips) > 0 ? var.advertise_ips[v] : "$PUBLIC_IP"]
  private_ip = [for v in range(var.node_vms) : length(var.private_ips) > 0 ? var.private_ips[v] : "$PRIVATE_IP"]

  # The launcher's contract on VM 1: it deploys onto the swarm, with the
  # registry's join token in its environment (the env file, sourced in a
  # subshell), never in its arguments. A marker file keeps a later boot
  # from deploying again over a running mesh.
  launcher_marker = "/var/lib/hit6/${var.project}.deployed"
  launcher_up = join(" ", compact([
    "launcher -p ${var.project} up --runtime swarm --publish --nodes ${local.node_count}",
    "--port-range ${var.node_port_range} --registry-port ${var.registry_port}",
    local.replicated ? "--registries ${var.registries} --etcd-image ${var.etcd_image}" : "",
    var.metrics_port == null ? "" : "--http-port ${var.metrics_port}",
    "--registry-image ${local.registry_ref} --node-image ${local.node_ref} --detach --quiet --timeout 600s",
  ]))
  launcher_command = !local.swarm ? null : join(" ", [
    "[ -e ${local.launcher_marker} ] || {",
    # Whether there is a token is no secret, unlike the token.
    nonsensitive(var.join_token != null) || var.join_token_secret != null
    ? "(set -a && . ${local.token_file} && set +a && exec ${local.launcher_up})" : local.launcher_up,
    "&& mkdir -p ${dirname(local.launcher_marker)} && touch ${local.launcher_marker}; }",
  ])

  # Installed by the startup script with swarm and more than one VM: VM 1
  # puts the worker token, the others get it, each with its own identity.
  swarm_token_command = "hit6-swarm-token"
  swarm_token_name    = try(var.join_token_secret.swarm_token_name, null)
  swarm_token_script = !local.swarm || local.swarm_token_name == null ? null : templatefile("${path.module}/templates/swarm_token.sh.tftpl", {
    store  = var.join_token_secret.store
    name   = local.swarm_token_name
    region = var.join_token_secret.region
    endpoint = coalesce(var.join_token_secret.endpoint, var.join_token_secret.store == "gcp_secret_manager"
    ? "https://secretmanager.googleapis.com" : "https://ssm.${var.join_token_secret.region}.amazonaws.com")
    metadata_endpoint = coalesce(var.join_token_secret.metadata_endpoint, var.join_token_secret.store == "gcp_secret_manager"
    ? "http://metadata.google.internal" : "http://169.254.169.254")
  })

  vms = [
    for v in range(var.node_vms) : {
      index         = v + 1
      runs_registry = v == 0
      swarm_role    = !local.swarm ? null : v == 0 ? "manager" : "worker"
      advertise_ip  = length(var.advertise_ips) > 0 ? var.advertise_ips[v] : null
      private_ip    = local.swarm && length(var.private_ips) > 0 ? var.private_ips[v] : null
      node_names    = [for i in range(local.swarm ? 0 : var.nodes_per_vm) : "${var.project}-vm${v + 1}-node-${i + 1}"]
      node_ports    = [for port in local.node_ports : port if !local.swarm]
      # With replicas, any VM may run one, and its etcd member.
      images = v == 0 || local.replicated ? concat([local.registry_ref, local.node_ref], local.replicated ? [var.etcd_image] : []) : [local.node_ref]
      # With swarm, VM 1 starts everything through the launcher, and the
      # workers run what the swarm schedules on them. (Filters rather than
      # conditionals, so that the values keep their types with docker.)
      docker_commands = concat(
        [for command in local.token_command : command if !local.swarm || v == 0],
        [for command in [local.network_command] : command if !local.swarm],
        v == 0 && !local.swarm ? [local.registry_command] : [],
        [
          for i, port in local.node_ports : join(" ", compact([
            "docker container inspect ${var.project}-vm${v + 1}-node-${i + 1} >/dev/null 2>&1 ||",
            "docker run -d --name ${var.project}-vm${v + 1}-node-${i + 1} --network ${var.project} --restart unless-stopped",
            "${local.labels} --label io.hit6.role=node --label io.hit6.index=${i + 1} --label io.hit6.vm=${v + 1}",
            "-p ${port}:8080 -e PUERTO_EXT=${port} -e IP_EXT=${local.ip_ext[v]}",
            "-e NODE_NAME=${var.project}-vm${v + 1}-node-${i + 1} -e LOG_FORMAT=${var.log_format}",
            local.token_env,
            "${local.node_ref} ${var.registry_host} ${var.registry_port}",
          ])) if !local.swarm
        ],
        [for command in [local.launcher_command] : command if local.swarm && v == 0],
      )
    }
  ]

  status_script = templatefile("${path.module}/templates/status.sh.tftpl", {
    project = var.project
  })

  startup_scripts = [
    for vm in local.vms : templatefile("${path.module}/templates/startup.sh.tftpl", {
      vm                     = vm
      project                = var.project
      docker_install_command = var.docker_install_command
      advertise_ip_command   = length(var.advertise_ips) > 0 ? null : var.advertise_ip_command
      status_script          = local.status_script
      join_token_script      = local.swarm && vm.index > 1 ? null : local.join_token_script
      join_token_command     = local.join_token_command
      swarm = !local.swarm ? null : {
        vms                = var.node_vms
        nodes              = local.node_count
        port               = local.swarm_port
        public_ip          = local.public_ip[vm.index - 1]
        private_ip         = local.private_ip[vm.index - 1]
        private_ip_command = length(var.private_ips) > 0 ? null : var.private_ip_command
        launcher_url       = var.launcher_url
        launcher_sha256    = var.launcher_sha256
        token_name         = local.swarm_token_name
        token_script       = local.swarm_token_script
        token_command      = local.swarm_token_command
      }
    })
  ]
}
