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
    local.token_env,
    local.registry_ref,
  ]))

  vms = [
    for v in range(var.node_vms) : {
      index         = v + 1
      runs_registry = v == 0
      advertise_ip  = length(var.advertise_ips) > 0 ? var.advertise_ips[v] : null
      node_names    = [for i in range(var.nodes_per_vm) : "${var.project}-vm${v + 1}-node-${i + 1}"]
      node_ports    = local.node_ports
      images        = v == 0 ? [local.registry_ref, local.node_ref] : [local.node_ref]
      docker_commands = concat(
        local.token_command,
        [local.network_command],
        v == 0 ? [local.registry_command] : [],
        [
          for i, port in local.node_ports : join(" ", compact([
            "docker container inspect ${var.project}-vm${v + 1}-node-${i + 1} >/dev/null 2>&1 ||",
            "docker run -d --name ${var.project}-vm${v + 1}-node-${i + 1} --network ${var.project} --restart unless-stopped",
            "${local.labels} --label io.hit6.role=node --label io.hit6.index=${i + 1} --label io.hit6.vm=${v + 1}",
            "-p ${port}:8080 -e PUERTO_EXT=${port} -e IP_EXT=${local.ip_ext[v]}",
            "-e NODE_NAME=${var.project}-vm${v + 1}-node-${i + 1} -e LOG_FORMAT=${var.log_format}",
            local.token_env,
            "${local.node_ref} ${var.registry_host} ${var.registry_port}",
          ]))
        ],
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
      join_token_script      = local.join_token_script
      join_token_command     = local.join_token_command
    })
  ]
}
