# Values the module refuses before anything is rendered. Each run expects the
# named variable's validation rule to fail, and nothing else.

variables {
  registry_host = "203.0.113.10"
  node_vms      = 2
  advertise_ips = ["203.0.113.10", "203.0.113.11"]
}

run "a_full_port_range_is_accepted" {
  command = plan

  variables {
    nodes_per_vm    = 9
    node_port_range = "8087-8095"
  }

  assert {
    condition     = length(output.node_ports) == 9 && output.node_ports[8] == 8095
    error_message = "9 nodes fit in 8087-8095"
  }
}

run "more_nodes_per_vm_than_the_port_range_holds" {
  command = plan

  variables {
    nodes_per_vm    = 10
    node_port_range = "8087-8095"
  }

  expect_failures = [var.nodes_per_vm]
}

run "a_backwards_port_range" {
  command = plan

  variables {
    node_port_range = "8095-8087"
  }

  expect_failures = [var.node_port_range]
}

run "a_port_range_beyond_65535" {
  command = plan

  variables {
    node_port_range = "65530-65536"
  }

  expect_failures = [var.node_port_range]
}

run "a_port_range_that_is_not_one" {
  command = plan

  variables {
    node_port_range = "8087:8095"
  }

  expect_failures = [var.node_port_range]
}

run "the_registry_port_inside_the_node_range" {
  command = plan

  variables {
    registry_port = 8090
  }

  expect_failures = [var.registry_port]
}

run "no_nodes" {
  command = plan

  variables {
    nodes_per_vm = 0
  }

  expect_failures = [var.nodes_per_vm]
}

run "no_vms" {
  command = plan

  variables {
    node_vms      = 0
    advertise_ips = []
  }

  expect_failures = [var.node_vms]
}

run "an_address_per_vm_missing" {
  command = plan

  variables {
    node_vms      = 3
    advertise_ips = ["203.0.113.10", "203.0.113.11"]
  }

  expect_failures = [var.advertise_ips]
}

run "no_source_for_the_advertised_ip" {
  command = plan

  variables {
    advertise_ips = []
  }

  expect_failures = [var.advertise_ips]
}

run "an_advertised_ip_that_is_not_an_ip" {
  command = plan

  variables {
    advertise_ips = ["203.0.113.10", "vm2.example.com"]
  }

  expect_failures = [var.advertise_ips]
}

run "shell_syntax_in_the_project" {
  command = plan

  variables {
    project = "hit6; rm -rf /"
  }

  expect_failures = [var.project]
}

run "shell_syntax_in_the_registry_host" {
  command = plan

  variables {
    registry_host = "203.0.113.10 $(id)"
  }

  expect_failures = [var.registry_host]
}

run "a_tag_in_the_image_name" {
  command = plan

  variables {
    node_image = "hit6-mesh/node:latest"
  }

  expect_failures = [var.node_image]
}

run "an_unknown_log_format" {
  command = plan

  variables {
    log_format = "xml"
  }

  expect_failures = [var.log_format]
}

run "an_ssh_user_with_shell_syntax" {
  command = plan

  variables {
    ssh_user = "admin; rm -rf /"
  }

  expect_failures = [var.ssh_user]
}

run "a_join_token_and_a_secret_store_both" {
  command = plan

  variables {
    join_token        = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    join_token_secret = { store = "gcp_secret_manager", name = "projects/p/secrets/s" }
  }

  expect_failures = [var.join_token_secret]
}

run "an_unknown_secret_store" {
  command = plan

  variables {
    join_token_secret = { store = "vault", name = "secret/hit6" }
  }

  expect_failures = [var.join_token_secret]
}

run "an_ssm_parameter_without_its_region" {
  command = plan

  variables {
    join_token_secret = { store = "aws_ssm", name = "/hit6/join-token" }
  }

  expect_failures = [var.join_token_secret]
}

run "shell_syntax_in_a_secret_name" {
  command = plan

  variables {
    join_token_secret = { store = "gcp_secret_manager", name = "projects/p/secrets/s'; id; '" }
  }

  expect_failures = [var.join_token_secret]
}

run "a_secret_endpoint_with_a_path" {
  command = plan

  variables {
    join_token_secret = { store = "gcp_secret_manager", name = "projects/p/secrets/s", endpoint = "https://example.com/'$(id)'" }
  }

  expect_failures = [var.join_token_secret]
}

# orchestrator = "swarm" and what it needs.

run "an_unknown_orchestrator" {
  command = plan

  variables {
    orchestrator = "kubernetes"
  }

  expect_failures = [var.orchestrator]
}

run "a_swarm_without_the_launcher" {
  command = plan

  variables {
    orchestrator       = "swarm"
    private_ip_command = "curl -fsS http://metadata/ip"
    join_token_secret  = { store = "aws_ssm", name = "/hit6/join-token", region = "eu-west-1", swarm_token_name = "/hit6/swarm-worker-token" }
  }

  expect_failures = [var.orchestrator]
}

run "a_launcher_without_its_checksum" {
  command = plan

  variables {
    orchestrator       = "swarm"
    launcher_url       = "https://example.com/launcher"
    private_ip_command = "curl -fsS http://metadata/ip"
    join_token_secret  = { store = "aws_ssm", name = "/hit6/join-token", region = "eu-west-1", swarm_token_name = "/hit6/swarm-worker-token" }
  }

  expect_failures = [var.orchestrator]
}

run "a_launcher_without_a_swarm" {
  command = plan

  variables {
    launcher_url    = "https://example.com/launcher"
    launcher_sha256 = "5f0c3a9e1d2b4c6a8e0f1a3b5c7d9e1f2a4b6c8d0e2f4a6b8c0d2e4f6a8b0c2d"
  }

  expect_failures = [var.orchestrator]
}

run "a_swarm_without_private_ips" {
  command = plan

  variables {
    orchestrator      = "swarm"
    launcher_url      = "https://example.com/launcher"
    launcher_sha256   = "5f0c3a9e1d2b4c6a8e0f1a3b5c7d9e1f2a4b6c8d0e2f4a6b8c0d2e4f6a8b0c2d"
    join_token_secret = { store = "aws_ssm", name = "/hit6/join-token", region = "eu-west-1", swarm_token_name = "/hit6/swarm-worker-token" }
  }

  expect_failures = [var.orchestrator]
}

run "a_swarm_of_two_without_a_place_for_the_worker_token" {
  command = plan

  variables {
    orchestrator       = "swarm"
    launcher_url       = "https://example.com/launcher"
    launcher_sha256    = "5f0c3a9e1d2b4c6a8e0f1a3b5c7d9e1f2a4b6c8d0e2f4a6b8c0d2e4f6a8b0c2d"
    private_ip_command = "curl -fsS http://metadata/ip"
    join_token_secret  = { store = "aws_ssm", name = "/hit6/join-token", region = "eu-west-1" }
  }

  expect_failures = [var.orchestrator]
}

run "a_worker_token_in_the_join_tokens_own_secret" {
  command = plan

  variables {
    join_token_secret = { store = "gcp_secret_manager", name = "projects/p/secrets/s", swarm_token_name = "projects/p/secrets/s" }
  }

  expect_failures = [var.join_token_secret]
}

run "shell_syntax_in_the_worker_token_name" {
  command = plan

  variables {
    join_token_secret = { store = "aws_ssm", name = "/hit6/join-token", region = "eu-west-1", swarm_token_name = "/hit6/x'; id; '" }
  }

  expect_failures = [var.join_token_secret]
}

run "shell_syntax_in_the_launcher_url" {
  command = plan

  variables {
    launcher_url       = "https://example.com/launcher';id;'"
    launcher_sha256    = "5f0c3a9e1d2b4c6a8e0f1a3b5c7d9e1f2a4b6c8d0e2f4a6b8c0d2e4f6a8b0c2d"
    orchestrator       = "swarm"
    private_ip_command = "curl -fsS http://metadata/ip"
    join_token_secret  = { store = "aws_ssm", name = "/hit6/join-token", region = "eu-west-1", swarm_token_name = "/hit6/swarm-worker-token" }
  }

  expect_failures = [var.launcher_url]
}

run "a_launcher_url_that_is_not_http" {
  command = plan

  variables {
    launcher_url       = "file:///tmp/launcher"
    launcher_sha256    = "5f0c3a9e1d2b4c6a8e0f1a3b5c7d9e1f2a4b6c8d0e2f4a6b8c0d2e4f6a8b0c2d"
    orchestrator       = "swarm"
    private_ip_command = "curl -fsS http://metadata/ip"
    join_token_secret  = { store = "aws_ssm", name = "/hit6/join-token", region = "eu-west-1", swarm_token_name = "/hit6/swarm-worker-token" }
  }

  expect_failures = [var.launcher_url]
}

run "a_launcher_checksum_that_is_not_sha256" {
  command = plan

  variables {
    launcher_sha256    = "d41d8cd98f00b204e9800998ecf8427e"
    launcher_url       = "https://example.com/launcher"
    orchestrator       = "swarm"
    private_ip_command = "curl -fsS http://metadata/ip"
    join_token_secret  = { store = "aws_ssm", name = "/hit6/join-token", region = "eu-west-1", swarm_token_name = "/hit6/swarm-worker-token" }
  }

  expect_failures = [var.launcher_sha256]
}

run "a_private_ip_that_is_not_ipv4" {
  command = plan

  variables {
    private_ips = ["10.0.0.1", "fd00::2"]
  }

  expect_failures = [var.private_ips]
}

run "a_private_ip_per_vm_missing" {
  command = plan

  variables {
    private_ips = ["10.0.0.1"]
  }

  expect_failures = [var.private_ips]
}

run "an_even_number_of_registries" {
  command = plan

  variables {
    orchestrator       = "swarm"
    registries         = 2
    launcher_url       = "https://github.com/acme/hit6/releases/download/v0.1.0/launcher-x86_64-linux"
    launcher_sha256    = "5f0c3a9e1d2b4c6a8e0f1a3b5c7d9e1f2a4b6c8d0e2f4a6b8c0d2e4f6a8b0c2d"
    private_ip_command = "curl -fsS http://metadata/ip"
    join_token_secret  = { store = "aws_ssm", name = "/hit6/join-token", region = "eu-west-1", swarm_token_name = "/hit6/swarm-worker-token" }
  }

  expect_failures = [var.registries]
}

run "registry_replicas_without_a_swarm" {
  command = plan

  variables {
    registries = 3
  }

  expect_failures = [var.registries]
}

run "registry_replicas_past_the_last_port" {
  command = plan

  variables {
    orchestrator       = "swarm"
    registries         = 3
    registry_port      = 65534
    launcher_url       = "https://github.com/acme/hit6/releases/download/v0.1.0/launcher-x86_64-linux"
    launcher_sha256    = "5f0c3a9e1d2b4c6a8e0f1a3b5c7d9e1f2a4b6c8d0e2f4a6b8c0d2e4f6a8b0c2d"
    private_ip_command = "curl -fsS http://metadata/ip"
    join_token_secret  = { store = "aws_ssm", name = "/hit6/join-token", region = "eu-west-1", swarm_token_name = "/hit6/swarm-worker-token" }
  }

  expect_failures = [var.registries]
}

run "an_etcd_image_without_its_tag" {
  command = plan

  variables {
    etcd_image = "gcr.io/etcd-development/etcd"
  }

  expect_failures = [var.etcd_image]
}

run "a_metrics_port_among_the_nodes" {
  command = plan

  variables {
    metrics_port = 8090
  }

  expect_failures = [var.metrics_port]
}
