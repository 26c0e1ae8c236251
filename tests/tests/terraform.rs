//! terraform/, offline: formatting; the provider-free module
//! (terraform/modules/cluster) validated and put through its `.tftest.hcl`
//! files; the cloud roots put through theirs against mock providers when the
//! provider binary is at hand (TF_PLUGIN_DIR); and a two-VM simulation that
//! runs the module's rendered container commands on the local Docker engine.
//!
//! Terraform runs in copies of terraform/ under the system temp directory, so
//! that nothing (.terraform/, state, lock files) is written into the checkout,
//! with CHECKPOINT_DISABLE set so that it makes no network request of its own.
//! Skips (saying so) when terraform is missing unless REQUIRE_TERRAFORM is set,
//! and the simulation when no Docker daemon is reachable unless REQUIRE_DOCKER is.

use node::events::Event;
use registry::events::Event as RegistryEvent;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use tests::docker::{self, await_events, bridge_gateway, images_built, labelled, leftovers, text, ProjectGuard};
use tests::TempDir;

#[path = "support/fake_cloud.rs"]
mod fake_cloud;
use fake_cloud::{FakeCloud, Request, Route};

const REGISTRY_IMAGE: &str = concat!("hit6-mesh/registry:", env!("CARGO_PKG_VERSION"));
const NODE_IMAGE: &str = concat!("hit6-mesh/node:", env!("CARGO_PKG_VERSION"));

/// The oldest Terraform the module accepts (`required_version`): validation
/// rules that refer to other variables came in 1.9; `terraform test` in 1.6
/// and `mock_provider` in 1.7.
const MIN_TERRAFORM: (u64, u64) = (1, 9);

/// Lines between which a startup script holds its `docker_commands`.
const BEGIN_MARKER: &str = "# >>> hit6-mesh containers >>>";
const END_MARKER: &str = "# <<< hit6-mesh containers <<<";

/// terraform/ in the checkout.
fn terraform_sources() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../terraform").canonicalize().expect("terraform/ is in the checkout")
}

/// Runs terraform with `args`, in `dir` when given. The environment cannot
/// redirect it elsewhere (TF_DATA_DIR, TF_WORKSPACE, TF_CLI_ARGS*), and it
/// neither asks for input nor checks for a newer version over the network.
fn terraform(dir: Option<&Path>, args: &[&str]) -> Output {
    let mut command = Command::new("terraform");
    if let Some(dir) = dir {
        command.arg(format!("-chdir={}", dir.display()));
    }
    command.args(args).env("CHECKPOINT_DISABLE", "1").env("TF_IN_AUTOMATION", "1").env("TF_INPUT", "0");
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("TF_CLI_ARGS") || key == "TF_DATA_DIR" || key == "TF_WORKSPACE" {
            command.env_remove(&*key);
        }
    }
    command.output().unwrap_or_else(|error| panic!("terraform {args:?} did not run: {error}"))
}

/// Runs terraform and fails the test, with its output, unless it succeeds.
fn terraform_ok(dir: &Path, args: &[&str]) -> Output {
    let output = terraform(Some(dir), args);
    assert!(output.status.success(), "terraform {} in {} failed:\n{}", args.join(" "), dir.display(), text(&output));
    output
}

/// Whether a terraform recent enough for the module is on PATH. When none
/// is, a test may skip, saying so, unless REQUIRE_TERRAFORM is set: then it fails.
fn terraform_available(suite: &str) -> bool {
    static FOUND: OnceLock<Result<String, String>> = OnceLock::new();
    let found = FOUND.get_or_init(|| {
        let output = match Command::new("terraform").args(["version", "-json"]).env("CHECKPOINT_DISABLE", "1").output()
        {
            Ok(output) if output.status.success() => output,
            Ok(output) => return Err(format!("`terraform version` failed: {}", text(&output).trim())),
            Err(error) => return Err(format!("no terraform on PATH ({error})")),
        };
        let version: Value = serde_json::from_slice(&output.stdout)
            .map_err(|e| format!("`terraform version -json` printed no JSON: {e}"))?;
        let version = version["terraform_version"].as_str().unwrap_or("").to_owned();
        let mut parts = version.split('.').map(|p| p.parse::<u64>().unwrap_or(0));
        let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        if (major, minor) < MIN_TERRAFORM {
            return Err(format!(
                "terraform {version} is older than {}.{}, which the module needs",
                MIN_TERRAFORM.0, MIN_TERRAFORM.1
            ));
        }
        eprintln!("using terraform {version}");
        Ok(version)
    });
    match found {
        Ok(_) => true,
        Err(why) if std::env::var_os("REQUIRE_TERRAFORM").is_some() => {
            panic!("REQUIRE_TERRAFORM is set but {why}; .ci/run installs one when it is missing")
        }
        Err(why) => {
            eprintln!("skipping {suite}: {why}; set REQUIRE_TERRAFORM=1 to fail instead");
            false
        }
    }
}

/// A copy of terraform/ (sources only: no .terraform/, state or lock file) in a directory of its own.
fn with_terraform_sources(name: &str) -> TempDir {
    let dir = TempDir::new(&format!("terraform-{name}"));
    copy_sources(&terraform_sources(), dir.path());
    dir
}

fn copy_sources(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == ".terraform"
            || name == ".terraform.lock.hcl"
            || name.contains(".tfstate")
            || name.ends_with(".tfplan")
        {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            copy_sources(&entry.path(), &to.join(&name));
        } else {
            std::fs::copy(entry.path(), to.join(&name)).unwrap();
        }
    }
}

/// Applies `main_tf`, a root module that calls `../modules/cluster`, with
/// local state in a temp directory (the module has no provider, so this
/// creates nothing), and returns its outputs' values by name.
fn render(name: &str, main_tf: &str) -> BTreeMap<String, Value> {
    let dir = with_terraform_sources(name);
    let root = dir.path().join("render");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("main.tf"), main_tf).unwrap();
    terraform_ok(&root, &["init", "-input=false", "-no-color"]);
    terraform_ok(&root, &["apply", "-auto-approve", "-input=false", "-no-color"]);
    let output = terraform_ok(&root, &["output", "-json", "-no-color"]);
    let outputs: BTreeMap<String, Value> =
        serde_json::from_slice(&output.stdout).expect("`terraform output -json` prints JSON");
    outputs.into_iter().map(|(name, output)| (name, output["value"].clone())).collect()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {value}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn terraform_files_are_formatted() {
    if !terraform_available("the terraform tests") {
        return;
    }
    let sources = terraform_sources();
    let output = terraform(None, &["fmt", "-check", "-recursive", "-diff", "-no-color", sources.to_str().unwrap()]);
    assert!(
        output.status.success(),
        "`terraform fmt -check -recursive` wants changes (run `terraform fmt -recursive terraform`):\n{}",
        text(&output)
    );
}

#[test]
fn the_cluster_module_validates_and_passes_its_tests() {
    if !terraform_available("the terraform tests") {
        return;
    }
    let dir = with_terraform_sources("module");
    let module = dir.path().join("modules/cluster");
    // No provider to install: this works offline.
    terraform_ok(&module, &["init", "-input=false", "-no-color"]);
    let validate = terraform_ok(&module, &["validate", "-no-color"]);
    assert!(text(&validate).contains("The configuration is valid"), "{}", text(&validate));

    let test = terraform_ok(&module, &["test", "-no-color"]);
    let stdout = String::from_utf8_lossy(&test.stdout);
    for file in ["tests/rendering.tftest.hcl... pass", "tests/validation.tftest.hcl... pass"] {
        assert!(stdout.contains(file), "`terraform test` did not report `{file}`:\n{stdout}");
    }
    // The refusals are among the runs that passed.
    assert!(stdout.contains("run \"more_nodes_per_vm_than_the_port_range_holds\"... pass"), "{stdout}");
    assert!(stdout.contains(" 0 failed"), "{stdout}");
}

#[test]
fn the_cloud_roots_pass_their_mock_provider_tests_where_the_provider_is_at_hand() {
    if !terraform_available("the terraform tests") {
        return;
    }
    let plugin_dir = std::env::var_os("TF_PLUGIN_DIR").map(PathBuf::from);
    for (root, provider) in [("gcp", "google"), ("aws", "aws")] {
        let at_hand = plugin_dir.as_ref().map(|dir| dir.join("registry.terraform.io/hashicorp").join(provider));
        let Some(plugin_dir) = plugin_dir.as_ref().filter(|_| at_hand.as_ref().is_some_and(|p| p.is_dir())) else {
            let why = match &plugin_dir {
                None => "TF_PLUGIN_DIR is not set".to_owned(),
                Some(dir) => {
                    format!("TF_PLUGIN_DIR ({}) has no registry.terraform.io/hashicorp/{provider}", dir.display())
                }
            };
            eprintln!(
                "skipping terraform/{root}: its provider, hashicorp/{provider}, is needed for its schema even under mock_provider, \
                 and cannot be downloaded offline: {why}. Point TF_PLUGIN_DIR at a plugin directory holding it to validate and test this root \
                 (terraform/modules/cluster, which renders everything the VMs run, is tested regardless)"
            );
            continue;
        };
        let dir = with_terraform_sources(root);
        let root_dir = dir.path().join(root);
        let plugin_dir_flag = format!("-plugin-dir={}", plugin_dir.display());
        terraform_ok(&root_dir, &["init", "-input=false", "-no-color", "-backend=false", &plugin_dir_flag]);
        let validate = terraform_ok(&root_dir, &["validate", "-no-color"]);
        assert!(text(&validate).contains("The configuration is valid"), "{}", text(&validate));
        let test = terraform_ok(&root_dir, &["test", "-no-color"]);
        let stdout = String::from_utf8_lossy(&test.stdout);
        assert!(
            stdout.contains(&format!("tests/{root}.tftest.hcl... pass")) && stdout.contains(" 0 failed"),
            "{stdout}"
        );
        eprintln!("terraform/{root}: validated, and its tests passed against a mocked hashicorp/{provider}");
    }
}

#[test]
fn the_module_renders_scripts_that_parse_and_pull_the_images_launcher_build_tags() {
    if !terraform_available("the terraform tests") {
        return;
    }
    let outputs = render(
        "defaults",
        r#"
module "literal_ips" {
  source        = "../modules/cluster"
  registry_host = "203.0.113.10"
  node_vms      = 2
  advertise_ips = ["203.0.113.10", "203.0.113.11"]
}

module "ip_from_metadata" {
  source               = "../modules/cluster"
  registry_host        = "203.0.113.10"
  node_vms             = 2
  advertise_ip_command = "curl -fsS -H 'Metadata-Flavor: Google' http://metadata.google.internal/computeMetadata/v1/instance/network-interfaces/0/access-configs/0/external-ip"
}

# orchestrator = "swarm", on each store, with private ips from a command and literal.
module "swarm_gcp" {
  source             = "../modules/cluster"
  orchestrator       = "swarm"
  registry_host      = "203.0.113.10"
  node_vms           = 2
  advertise_ips      = ["203.0.113.10", "203.0.113.11"]
  private_ip_command = "curl -fsS -H 'Metadata-Flavor: Google' http://metadata.google.internal/computeMetadata/v1/instance/network-interfaces/0/ip"
  launcher_url       = "https://github.com/acme/hit6/releases/download/v0.1.0/launcher-x86_64-linux"
  launcher_sha256    = "5f0c3a9e1d2b4c6a8e0f1a3b5c7d9e1f2a4b6c8d0e2f4a6b8c0d2e4f6a8b0c2d"
  join_token_secret = {
    store            = "gcp_secret_manager"
    name             = "projects/hit6-test/secrets/hit6-join-token"
    swarm_token_name = "projects/hit6-test/secrets/hit6-swarm-worker-token"
  }
}

module "swarm_aws" {
  source               = "../modules/cluster"
  orchestrator         = "swarm"
  registry_host        = "203.0.113.10"
  node_vms             = 2
  advertise_ip_command = "curl -fsS http://169.254.169.254/latest/meta-data/public-ipv4"
  private_ips          = ["10.0.0.1", "10.0.0.2"]
  launcher_url         = "https://github.com/acme/hit6/releases/download/v0.1.0/launcher-x86_64-linux"
  launcher_sha256      = "5f0c3a9e1d2b4c6a8e0f1a3b5c7d9e1f2a4b6c8d0e2f4a6b8c0d2e4f6a8b0c2d"
  join_token_secret = {
    store            = "aws_ssm"
    name             = "/hit6/join-token"
    region           = "eu-west-1"
    swarm_token_name = "/hit6/swarm-worker-token"
  }
}

output "images" {
  value     = module.literal_ips.vms[0].images
  sensitive = true
}

output "scripts" {
  value = concat(
    module.literal_ips.startup_scripts, module.ip_from_metadata.startup_scripts, [module.literal_ips.status_script],
    module.swarm_gcp.startup_scripts, module.swarm_aws.startup_scripts,
    [module.swarm_gcp.swarm_token_script, module.swarm_aws.swarm_token_script],
  )
  sensitive = true
}
"#,
    );
    assert_eq!(
        strings(&outputs["images"]),
        [REGISTRY_IMAGE, NODE_IMAGE],
        "the module's default image_tag is not the workspace version: update it in terraform/modules/cluster/variables.tf"
    );
    let scripts = strings(&outputs["scripts"]);
    assert_eq!(scripts.len(), 11, "4 docker scripts, the status script, 4 swarm scripts and 2 hit6-swarm-token");
    for script in scripts {
        let parse = Command::new("sh").args(["-n", "-c", &script]).output().expect("sh runs");
        assert!(parse.status.success(), "sh cannot parse the rendered script: {}\n{script}", text(&parse));
    }
}

/// The container-starting part of a startup script: the lines between the markers.
fn container_section(script: &str) -> Vec<String> {
    let begin =
        script.find(&format!("\n{BEGIN_MARKER}\n")).unwrap_or_else(|| panic!("no `{BEGIN_MARKER}` in\n{script}"));
    let section = &script[begin + BEGIN_MARKER.len() + 2..];
    let end = section.find(&format!("\n{END_MARKER}\n")).unwrap_or_else(|| panic!("no `{END_MARKER}` in\n{script}"));
    section[..end].lines().map(str::to_owned).collect()
}

/// Runs one line of a startup script, as the VM's shell would.
fn sh(line: &str) -> Output {
    Command::new("sh").args(["-c", line]).output().expect("sh runs")
}

const REGISTRY_VM_PROJECT: &str = "hit6-test-tf1";
const NODE_VM_PROJECT: &str = "hit6-test-tf2";

/// Two VMs on one Docker engine: the module renders the lab's layout (the
/// registry and 3 nodes on VM 1, 3 nodes on VM 2), and the container-starting
/// part of each VM's script runs here as is. Each "VM" is its own project on
/// its own network, which Docker isolates from the other one, so the nodes
/// reach the registry and each other only at the "public ip" they advertise
/// (the host's address on the default bridge) and the published ports. The
/// two VMs share that ip, so they take different port ranges, and each
/// renders its own project, which two calls of the module give.
#[tokio::test]
async fn the_rendered_scripts_of_two_vms_form_one_mesh_through_published_ports() {
    if !terraform_available("the two-VM simulation") || !docker::available("the two-VM simulation") {
        return;
    }
    let public_ip = bridge_gateway();
    // The VMs hold a join token, which the scripts write where the "VMs" keep secrets.
    let join_token = wire::secure::JoinToken::generate();
    let join_token = join_token.reveal().as_str().to_owned();
    let secrets = TempDir::new("terraform-simulation-secrets");
    let secrets_dir = secrets.path().display();
    let outputs = render(
        "simulation",
        &format!(
            r#"
# Both calls describe the same two-VM deployment; VM 1 is taken from the
# first and VM 2 from the second, so that the VMs, sharing one host, get
# their own projects and port ranges.
locals {{
  public_ip   = "{public_ip}"
  join_token  = "{join_token}"
  secrets_dir = "{secrets_dir}"
}}

module "registry_vm" {{
  source          = "../modules/cluster"
  join_token      = local.join_token
  secrets_dir     = local.secrets_dir
  project         = "{REGISTRY_VM_PROJECT}"
  registry_host   = local.public_ip
  registry_port   = 18486
  node_vms        = 2
  nodes_per_vm    = 3
  node_port_range = "18487-18489"
  advertise_ips   = [local.public_ip, local.public_ip]
}}

module "node_vm" {{
  source          = "../modules/cluster"
  join_token      = local.join_token
  secrets_dir     = local.secrets_dir
  project         = "{NODE_VM_PROJECT}"
  registry_host   = local.public_ip
  registry_port   = 18486
  node_vms        = 2
  nodes_per_vm    = 3
  node_port_range = "18490-18492"
  advertise_ips   = [local.public_ip, local.public_ip]
}}

output "vms" {{
  value     = [module.registry_vm.vms[0], module.node_vm.vms[1]]
  sensitive = true
}}

output "status_scripts" {{
  value = [module.registry_vm.status_script, module.node_vm.status_script]
}}

output "expected_greetings" {{
  value = module.registry_vm.expected_greetings
}}
"#
        ),
    );
    let vms = outputs["vms"].as_array().unwrap();
    let expected_greetings = outputs["expected_greetings"].as_u64().unwrap();
    assert_eq!(expected_greetings, 15);

    // What runs is exactly what each VM's startup script holds between the
    // markers, with nothing to substitute: the addresses are literal.
    let mut commands = Vec::new();
    for vm in vms {
        let docker_commands = strings(&vm["docker_commands"]);
        assert_eq!(container_section(vm["startup_script"].as_str().unwrap()), docker_commands);
        assert!(docker_commands.iter().all(|c| !c.contains('$')), "a placeholder is left: {docker_commands:#?}");
        commands.push(docker_commands);
    }
    assert_eq!(vms[0]["runs_registry"], true);
    assert_eq!(vms[1]["runs_registry"], false);

    images_built();
    drop((ProjectGuard(REGISTRY_VM_PROJECT.into()), ProjectGuard(NODE_VM_PROJECT.into()))); // what a killed run left
    let guards = (ProjectGuard(REGISTRY_VM_PROJECT.into()), ProjectGuard(NODE_VM_PROJECT.into()));

    // VM 1 first; VM 2 once the registry listens.
    for line in &commands[0] {
        let run = sh(line);
        assert!(run.status.success(), "VM 1: `{line}` failed: {}", text(&run));
    }
    let listening = await_events(&format!("{REGISTRY_VM_PROJECT}-registry"), RegistryEvent::Listening, 1).await;
    assert_eq!(listening[0]["token"], true, "the registry admits token holders only: {}", listening[0]);
    for vm in &commands {
        let argv = vm.iter().filter(|line| line.contains("docker run"));
        assert!(argv.clone().all(|line| !line.contains(join_token.as_str())), "a docker command line holds the token");
    }
    for line in &commands[1] {
        let run = sh(line);
        assert!(run.status.success(), "VM 2: `{line}` failed: {}", text(&run));
    }

    // Each VM is on its own network, and each node on its VM's.
    for project in [REGISTRY_VM_PROJECT, NODE_VM_PROJECT] {
        assert_eq!(labelled("network", project), [project]);
        for container in labelled("container", project) {
            let networks = docker::docker(&[
                "inspect",
                "--format",
                "{{range $name, $_ := .NetworkSettings.Networks}}{{$name}} {{end}}",
                &container,
            ]);
            assert_eq!(String::from_utf8_lossy(&networks.stdout).trim(), project, "{container}");
        }
    }

    // Every node registered at the public ip and its PUERTO_EXT, under its NODE_NAME.
    let nodes: Vec<(String, u64)> = vms
        .iter()
        .flat_map(|vm| {
            strings(&vm["node_names"])
                .into_iter()
                .zip(vm["node_ports"].as_array().unwrap().iter().map(|p| p.as_u64().unwrap()))
        })
        .collect();
    assert_eq!(nodes.len(), 6);
    let mut contacts = BTreeMap::new();
    let mut addresses = BTreeMap::new();
    for (name, port) in &nodes {
        let registered = &await_events(name, Event::Registered, 1).await[0];
        assert_eq!(
            registered["addr"],
            format!("{public_ip}:{port}"),
            "{name} advertised the wrong address: {registered}"
        );
        assert_eq!(registered["name"], name.as_str(), "{registered}");
        contacts.insert(name.clone(), registered["contacts"].as_u64().unwrap());
        addresses.insert(name.clone(), format!("{public_ip}:{port}"));
    }
    assert_eq!(contacts.values().sum::<u64>(), expected_greetings, "each pair is introduced once: {contacts:?}");

    // A node greets the peers registered before it and is greeted by those after it.
    let mut pairs = BTreeSet::new();
    for (name, _) in &nodes {
        let before = contacts[name];
        for greeting in await_events(name, Event::GreetingSent, before as usize).await {
            assert_eq!(greeting["peer_addr"], addresses[greeting["peer_name"].as_str().unwrap()], "{greeting}");
        }
        let received = await_events(name, Event::GreetingReceived, (nodes.len() as u64 - 1 - before) as usize).await;
        for greeting in received {
            let peer = greeting["peer_name"].as_str().unwrap().to_owned();
            assert_eq!(greeting["peer_addr"], addresses[&peer], "{greeting}");
            let pair = if peer < *name { (peer, name.clone()) } else { (name.clone(), peer) };
            assert!(pairs.insert(pair.clone()), "{pair:?} greeted twice");
        }
    }
    assert_eq!(pairs.len() as u64, expected_greetings, "{pairs:#?}");
    let across =
        pairs.iter().filter(|(a, b)| a.starts_with(REGISTRY_VM_PROJECT) != b.starts_with(REGISTRY_VM_PROJECT)).count();
    assert_eq!(across, 9, "every node of VM 1 and every node of VM 2 greeted: {pairs:#?}");

    // The mesh command (hit6-mesh-status, which the startup script installs) adds up to the same.
    let mut received = 0;
    for (script, project) in strings(&outputs["status_scripts"]).iter().zip([REGISTRY_VM_PROJECT, NODE_VM_PROJECT]) {
        let status = sh(script);
        let stdout = String::from_utf8_lossy(&status.stdout);
        assert!(status.status.success(), "{}", text(&status));
        assert_eq!(stdout.lines().filter(|l| l.starts_with(project) && l.contains(" failed 0")).count(), 3, "{stdout}");
        let total =
            stdout.lines().find_map(|l| l.strip_prefix("received on this VM: ")).unwrap_or_else(|| panic!("{stdout}"));
        received += total.parse::<u64>().unwrap_or_else(|_| panic!("{stdout}"));
    }
    assert_eq!(received, expected_greetings);

    drop(guards);
    assert!(leftovers(REGISTRY_VM_PROJECT).is_empty() && leftovers(NODE_VM_PROJECT).is_empty(), "left behind");
}

/// What the first container-section line of a VM did when its join token
/// comes from a secret store: `install -d ... && hit6-join-token FILE`, run
/// with the rendered `hit6-join-token` on PATH, and every curl it started
/// logged (its argv) on the way to the real one.
struct Fetched {
    run: Output,
    /// The env file's content and mode, when it was written.
    env_file: Option<(String, u32)>,
    /// Every argument of every curl, one per line.
    argv: String,
    script: String,
    /// The fake's view of what was asked.
    requests: Vec<Request>,
}

/// Renders the module with `join_token_secret = {secret}` (an HCL object,
/// whose endpoints are `cloud`'s) and runs what it renders, as above.
fn fetch_join_token(name: &str, secret: &str, cloud: FakeCloud) -> Fetched {
    let dir = TempDir::new(&format!("terraform-{name}-vm"));
    let secrets_dir = dir.path().join("secrets");
    let outputs = render(
        name,
        &format!(
            r#"
module "cluster" {{
  source            = "../modules/cluster"
  registry_host     = "203.0.113.10"
  advertise_ips     = ["203.0.113.10"]
  secrets_dir       = "{}"
  join_token_secret = {secret}
}}

output "script" {{
  value = module.cluster.join_token_script
}}

output "first_command" {{
  value     = module.cluster.vms[0].docker_commands[0]
  sensitive = true
}}
"#,
            secrets_dir.display()
        ),
    );
    let script = outputs["script"].as_str().expect("a secret store renders hit6-join-token").to_owned();
    let parse = Command::new("sh").args(["-n", "-c", &script]).output().expect("sh runs");
    assert!(parse.status.success(), "sh cannot parse hit6-join-token: {}\n{script}", text(&parse));

    let (path, argv_log) = install_with_logging_curl(dir.path(), "hit6-join-token", &script);
    let first_command = outputs["first_command"].as_str().unwrap().to_owned();
    let env_path = secrets_dir.join("hit6.env");
    assert_eq!(
        first_command,
        format!("install -d -m 700 {} && hit6-join-token {}", secrets_dir.display(), env_path.display())
    );
    let run = Command::new("sh").args(["-c", &first_command]).env("PATH", path).output().expect("sh runs");
    let env_file = std::fs::read_to_string(&env_path)
        .ok()
        .map(|content| (content, std::fs::metadata(&env_path).unwrap().permissions().mode() & 0o777));
    let argv = std::fs::read_to_string(&argv_log).unwrap_or_default();
    Fetched { run, env_file, argv, script, requests: cloud.requests() }
}

/// A fresh join token's 64 hex characters.
fn new_join_token() -> String {
    wire::secure::JoinToken::generate().reveal().as_str().to_owned()
}

const GCP_TOKEN_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";
const GCP_SECRET_PATH: &str = "/v1/projects/hit6-test/secrets/hit6-join-token/versions/latest:access";
const GCP_ACCESS_TOKEN: &str = "ya29.fake-access-token-of-the-vm";

fn gcp_secret(cloud: &FakeCloud) -> String {
    format!(
        r#"{{ store = "gcp_secret_manager", name = "projects/hit6-test/secrets/hit6-join-token", endpoint = "{0}", metadata_endpoint = "{0}" }}"#,
        cloud.url()
    )
}

/// The metadata server's answer to a VM asking for its service account's access token.
fn gcp_access_token_route() -> Route {
    Route::new(
        "GET",
        GCP_TOKEN_PATH,
        200,
        format!(r#"{{"access_token":"{GCP_ACCESS_TOKEN}","expires_in":3599,"token_type":"Bearer"}}"#),
    )
}

fn gcp_cloud(secret_status: u16, join_token: &str) -> FakeCloud {
    use base64::Engine;
    let data = base64::engine::general_purpose::STANDARD.encode(join_token);
    FakeCloud::start(vec![
        gcp_access_token_route(),
        // Secret Manager's answer, as it formats it.
        Route::new(
            "GET",
            GCP_SECRET_PATH,
            secret_status,
            format!(
                "{{\n  \"name\": \"projects/123/secrets/hit6-join-token/versions/1\",\n  \"payload\": {{\n    \"data\": \"{data}\",\n    \"dataCrc32c\": \"42\"\n  }}\n}}\n"
            ),
        ),
    ])
}

#[test]
fn a_vm_fetches_its_join_token_from_secret_manager_with_its_own_access_token() {
    if !terraform_available("the join token from Secret Manager") {
        return;
    }
    let join_token = new_join_token();
    let cloud = gcp_cloud(200, &join_token);
    let secret = gcp_secret(&cloud);
    let fetched = fetch_join_token("gcp-secret", &secret, cloud);

    assert!(fetched.run.status.success(), "{}", text(&fetched.run));
    assert_eq!(fetched.env_file, Some((format!("HIT6_JOIN_TOKEN={join_token}\n"), 0o600)));
    assert!(!fetched.script.contains(&join_token));
    let [metadata, secret]: [Request; 2] = fetched.requests.try_into().expect("two requests");
    assert_eq!((metadata.method.as_str(), metadata.path.as_str()), ("GET", GCP_TOKEN_PATH));
    assert_eq!(metadata.headers.get("metadata-flavor").map(String::as_str), Some("Google"));
    assert_eq!((secret.method.as_str(), secret.path.as_str()), ("GET", GCP_SECRET_PATH));
    assert_eq!(secret.headers["authorization"], format!("Bearer {GCP_ACCESS_TOKEN}"));
    for held in [join_token.as_str(), GCP_ACCESS_TOKEN] {
        assert!(!fetched.argv.contains(held), "a secret was on a curl command line:\n{}", fetched.argv);
    }
}

#[test]
fn a_vm_refused_its_join_token_says_which_role_it_lacks_and_writes_nothing() {
    if !terraform_available("the join token from Secret Manager") {
        return;
    }
    let join_token = new_join_token();
    let cloud = gcp_cloud(403, &join_token);
    let secret = gcp_secret(&cloud);
    let fetched = fetch_join_token("gcp-refused", &secret, cloud);

    assert!(!fetched.run.status.success());
    let stderr = String::from_utf8_lossy(&fetched.run.stderr);
    assert!(stderr.contains("roles/secretmanager.secretAccessor"), "{stderr}");
    assert_eq!(fetched.env_file, None);
}

const AWS_SESSION: &str = "IQoJb3JpZ2luX2VjEFAKE-session-token";
const AWS_SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYFAKEKEY";

fn aws_cloud(value: &str) -> FakeCloud {
    let credentials = format!(
        "{{\n  \"Code\" : \"Success\",\n  \"Type\" : \"AWS-HMAC\",\n  \"AccessKeyId\" : \"ASIAFAKEKEYID\",\n  \"SecretAccessKey\" : \"{AWS_SECRET_KEY}\",\n  \"Token\" : \"{AWS_SESSION}\",\n  \"Expiration\" : \"2026-12-03T20:00:00Z\"\n}}"
    );
    FakeCloud::start(vec![
        Route::new("PUT", "/latest/api/token", 200, "imds-v2-session"),
        Route::new("GET", "/latest/meta-data/iam/security-credentials/", 200, "hit6-vm"),
        Route::new("GET", "/latest/meta-data/iam/security-credentials/hit6-vm", 200, credentials),
        Route::new(
            "POST",
            "/",
            200,
            format!(
                r#"{{"Parameter":{{"ARN":"arn:aws:ssm:eu-west-1:123456789012:parameter/hit6/join-token","Name":"/hit6/join-token","Type":"SecureString","Value":"{value}","Version":1}}}}"#
            ),
        ),
    ])
}

fn aws_secret(cloud: &FakeCloud) -> String {
    format!(
        r#"{{ store = "aws_ssm", name = "/hit6/join-token", region = "eu-west-1", endpoint = "{0}", metadata_endpoint = "{0}" }}"#,
        cloud.url()
    )
}

#[test]
fn a_vm_fetches_its_join_token_from_ssm_with_its_instance_role_over_imdsv2() {
    if !terraform_available("the join token from SSM") {
        return;
    }
    let join_token = new_join_token();
    let cloud = aws_cloud(&join_token);
    let secret = aws_secret(&cloud);
    let fetched = fetch_join_token("aws-ssm", &secret, cloud);

    assert!(fetched.run.status.success(), "{}", text(&fetched.run));
    assert_eq!(fetched.env_file, Some((format!("HIT6_JOIN_TOKEN={join_token}\n"), 0o600)));
    let [session, role, credentials, parameter]: [Request; 4] = fetched.requests.try_into().expect("four requests");
    assert_eq!(session.method, "PUT");
    assert!(session.headers.contains_key("x-aws-ec2-metadata-token-ttl-seconds"));
    for imds in [&role, &credentials] {
        assert_eq!(imds.headers["x-aws-ec2-metadata-token"], "imds-v2-session", "{imds:?}");
    }
    assert_eq!(credentials.path, "/latest/meta-data/iam/security-credentials/hit6-vm");
    assert_eq!(parameter.headers["x-amz-target"], "AmazonSSM.GetParameter");
    assert_eq!(parameter.headers["x-amz-security-token"], AWS_SESSION);
    let authorization = &parameter.headers["authorization"];
    assert!(
        authorization.starts_with("AWS4-HMAC-SHA256 Credential=ASIAFAKEKEYID/")
            && authorization.contains("/eu-west-1/ssm/aws4_request"),
        "{authorization}"
    );
    assert_eq!(parameter.body, r#"{"Name":"/hit6/join-token","WithDecryption":true}"#);
    for held in [join_token.as_str(), AWS_SESSION, AWS_SECRET_KEY, "imds-v2-session"] {
        assert!(!fetched.argv.contains(held), "a secret was on a curl command line:\n{}", fetched.argv);
    }
}

#[test]
fn a_parameter_that_holds_no_join_token_is_refused_and_nothing_is_written() {
    if !terraform_available("the join token from SSM") {
        return;
    }
    let cloud = aws_cloud("hunter2; $(id)");
    let secret = aws_secret(&cloud);
    let fetched = fetch_join_token("aws-not-a-token", &secret, cloud);

    assert!(!fetched.run.status.success());
    let stderr = String::from_utf8_lossy(&fetched.run.stderr);
    assert!(stderr.contains("does not hold a join token"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "the value is not echoed: {stderr}");
    assert_eq!(fetched.env_file, None);
}

/// What `hit6-swarm-token put|get` did, run as the startup scripts run it,
/// against a fake store, with every curl's argv logged on the way to the real one.
struct SwarmToken {
    run: Output,
    /// Every argument of every curl, one per line.
    argv: String,
    requests: Vec<Request>,
}

/// Renders the module with orchestrator = "swarm" and `join_token_secret =
/// {secret}` (an HCL object, with swarm_token_name and `cloud`'s endpoints),
/// then runs `hit6-swarm-token {mode}` with `stdin` as its input.
fn swarm_token(name: &str, secret: &str, cloud: FakeCloud, mode: &str, stdin: &str) -> SwarmToken {
    let dir = TempDir::new(&format!("terraform-{name}-vm"));
    let outputs = render(
        name,
        &format!(
            r#"
module "cluster" {{
  source            = "../modules/cluster"
  orchestrator      = "swarm"
  registry_host     = "203.0.113.10"
  node_vms          = 2
  advertise_ips     = ["203.0.113.10", "203.0.113.11"]
  private_ips       = ["10.0.0.1", "10.0.0.2"]
  launcher_url      = "https://example.com/launcher"
  launcher_sha256   = "5f0c3a9e1d2b4c6a8e0f1a3b5c7d9e1f2a4b6c8d0e2f4a6b8c0d2e4f6a8b0c2d"
  join_token_secret = {secret}
}}

output "script" {{
  value = module.cluster.swarm_token_script
}}
"#
        ),
    );
    let script = outputs["script"].as_str().expect("a swarm with a store renders hit6-swarm-token").to_owned();
    let (path, argv_log) = install_with_logging_curl(dir.path(), "hit6-swarm-token", &script);
    let mut child = Command::new("hit6-swarm-token")
        .arg(mode)
        .env("PATH", &path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("hit6-swarm-token runs");
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    }
    let run = child.wait_with_output().unwrap();
    let argv = std::fs::read_to_string(&argv_log).unwrap_or_default();
    SwarmToken { run, argv, requests: cloud.requests() }
}

/// What VM 1 puts: its private ip and port, and a worker token as `docker
/// swarm join-token -q worker` prints it.
const SWARM_LINE: &str =
    "10.128.0.2:2377 SWMTKN-1-3pu6hszjas19xyp7ghgosyx9k8atbfcr8p2is99znpy26u2lkl-1awxwuwd3z9j1z3puu7rcgdbx";
const SWARM_TOKEN: &str = "SWMTKN-1-3pu6hszjas19xyp7ghgosyx9k8atbfcr8p2is99znpy26u2lkl-1awxwuwd3z9j1z3puu7rcgdbx";
const GCP_SWARM_PATH: &str = "/v1/projects/hit6-test/secrets/hit6-swarm-worker-token";

fn gcp_swarm_secret(cloud: &FakeCloud) -> String {
    format!(
        r#"{{ store = "gcp_secret_manager", name = "projects/hit6-test/secrets/hit6-join-token", swarm_token_name = "projects/hit6-test/secrets/hit6-swarm-worker-token", endpoint = "{0}", metadata_endpoint = "{0}" }}"#,
        cloud.url()
    )
}

fn gcp_swarm_cloud(latest: &str) -> FakeCloud {
    use base64::Engine;
    let data = base64::engine::general_purpose::STANDARD.encode(latest);
    FakeCloud::start(vec![
        gcp_access_token_route(),
        Route::new(
            "POST",
            &format!("{GCP_SWARM_PATH}:addVersion"),
            200,
            r#"{"name":"projects/123/secrets/hit6-swarm-worker-token/versions/2","state":"ENABLED"}"#,
        ),
        Route::new(
            "GET",
            &format!("{GCP_SWARM_PATH}/versions/latest:access"),
            200,
            format!("{{\n  \"name\": \"projects/123/secrets/hit6-swarm-worker-token/versions/2\",\n  \"payload\": {{\n    \"data\": \"{data}\"\n  }}\n}}\n"),
        ),
    ])
}

#[test]
fn vm_1_adds_the_worker_token_to_secret_manager_and_a_worker_reads_it_back() {
    if !terraform_available("the swarm's worker token in Secret Manager") {
        return;
    }
    use base64::Engine;
    let cloud = gcp_swarm_cloud(SWARM_LINE);
    let secret = gcp_swarm_secret(&cloud);
    let put = swarm_token("gcp-swarm-put", &secret, cloud, "put", &format!("{SWARM_LINE}\n"));
    assert!(put.run.status.success(), "{}", text(&put.run));
    let [metadata, add]: [Request; 2] = put.requests.try_into().expect("two requests");
    assert_eq!((metadata.method.as_str(), metadata.path.as_str()), ("GET", GCP_TOKEN_PATH));
    assert_eq!((add.method.as_str(), add.path.as_str()), ("POST", format!("{GCP_SWARM_PATH}:addVersion").as_str()));
    assert_eq!(add.headers["authorization"], format!("Bearer {GCP_ACCESS_TOKEN}"));
    let body: Value = serde_json::from_str(&add.body).expect("addVersion's body is JSON");
    let data = base64::engine::general_purpose::STANDARD.decode(body["payload"]["data"].as_str().unwrap()).unwrap();
    assert_eq!(String::from_utf8(data).unwrap(), SWARM_LINE, "{body}");
    for held in [SWARM_TOKEN, GCP_ACCESS_TOKEN] {
        assert!(!put.argv.contains(held), "a secret was on a curl command line:\n{}", put.argv);
    }

    let cloud = gcp_swarm_cloud(SWARM_LINE);
    let secret = gcp_swarm_secret(&cloud);
    let get = swarm_token("gcp-swarm-get", &secret, cloud, "get", "");
    assert!(get.run.status.success(), "{}", text(&get.run));
    assert_eq!(String::from_utf8_lossy(&get.run.stdout), format!("{SWARM_LINE}\n"));
    assert_eq!(get.requests.len(), 2);
    assert!(!get.argv.contains(SWARM_TOKEN) && !get.argv.contains(GCP_ACCESS_TOKEN), "{}", get.argv);
}

#[test]
fn a_worker_waits_while_the_store_holds_the_placeholder_and_vm_1_puts_only_a_worker_token() {
    if !terraform_available("the swarm's worker token in Secret Manager") {
        return;
    }
    // Before VM 1 has written, the secret holds Terraform's placeholder.
    let cloud = gcp_swarm_cloud("none");
    let secret = gcp_swarm_secret(&cloud);
    let get = swarm_token("gcp-swarm-placeholder", &secret, cloud, "get", "");
    assert!(!get.run.status.success());
    assert!(String::from_utf8_lossy(&get.run.stderr).contains("holds no worker token yet"), "{}", text(&get.run));
    assert!(get.run.stdout.is_empty());

    // Anything but "IP:PORT SWMTKN-1-..." is refused before any request.
    let cloud = gcp_swarm_cloud("none");
    let secret = gcp_swarm_secret(&cloud);
    let put = swarm_token("gcp-swarm-bad-put", &secret, cloud, "put", "10.128.0.2:2377 $(id)\n");
    assert!(!put.run.status.success());
    assert!(String::from_utf8_lossy(&put.run.stderr).contains("put reads"), "{}", text(&put.run));
    assert!(put.requests.is_empty(), "{:?}", put.requests);
}

fn aws_swarm_cloud(answer: String) -> FakeCloud {
    let credentials = format!(
        "{{\n  \"Code\" : \"Success\",\n  \"AccessKeyId\" : \"ASIAFAKEKEYID\",\n  \"SecretAccessKey\" : \"{AWS_SECRET_KEY}\",\n  \"Token\" : \"{AWS_SESSION}\"\n}}"
    );
    FakeCloud::start(vec![
        Route::new("PUT", "/latest/api/token", 200, "imds-v2-session"),
        Route::new("GET", "/latest/meta-data/iam/security-credentials/", 200, "hit6-manager"),
        Route::new("GET", "/latest/meta-data/iam/security-credentials/hit6-manager", 200, credentials),
        Route::new("POST", "/", 200, answer),
    ])
}

fn aws_swarm_secret(cloud: &FakeCloud) -> String {
    format!(
        r#"{{ store = "aws_ssm", name = "/hit6/join-token", region = "eu-west-1", swarm_token_name = "/hit6/swarm-worker-token", endpoint = "{0}", metadata_endpoint = "{0}" }}"#,
        cloud.url()
    )
}

#[test]
fn vm_1_puts_the_worker_token_in_ssm_and_a_worker_gets_it_with_its_own_role() {
    if !terraform_available("the swarm's worker token in SSM") {
        return;
    }
    let cloud = aws_swarm_cloud(r#"{"Tier":"Standard","Version":2}"#.to_owned());
    let secret = aws_swarm_secret(&cloud);
    let put = swarm_token("aws-swarm-put", &secret, cloud, "put", &format!("{SWARM_LINE}\n"));
    assert!(put.run.status.success(), "{}", text(&put.run));
    let parameter = put.requests.last().expect("requests").clone();
    assert_eq!(put.requests.len(), 4);
    assert_eq!(parameter.headers["x-amz-target"], "AmazonSSM.PutParameter");
    assert_eq!(parameter.headers["x-amz-security-token"], AWS_SESSION);
    assert!(parameter.headers["authorization"].contains("/eu-west-1/ssm/aws4_request"), "{parameter:?}");
    let body: Value = serde_json::from_str(&parameter.body).expect("PutParameter's body is JSON");
    assert_eq!(
        body,
        serde_json::json!({"Name": "/hit6/swarm-worker-token", "Type": "SecureString", "Overwrite": true, "Value": SWARM_LINE})
    );
    for held in [SWARM_TOKEN, AWS_SESSION, AWS_SECRET_KEY, "imds-v2-session"] {
        assert!(!put.argv.contains(held), "a secret was on a curl command line:\n{}", put.argv);
    }

    let cloud = aws_swarm_cloud(format!(
        r#"{{"Parameter":{{"Name":"/hit6/swarm-worker-token","Type":"SecureString","Value":"{SWARM_LINE}","Version":2}}}}"#
    ));
    let secret = aws_swarm_secret(&cloud);
    let get = swarm_token("aws-swarm-get", &secret, cloud, "get", "");
    assert!(get.run.status.success(), "{}", text(&get.run));
    assert_eq!(String::from_utf8_lossy(&get.run.stdout), format!("{SWARM_LINE}\n"));
    let parameter = get.requests.last().unwrap();
    assert_eq!(parameter.headers["x-amz-target"], "AmazonSSM.GetParameter");
    assert_eq!(parameter.body, r#"{"Name":"/hit6/swarm-worker-token","WithDecryption":true}"#);
    for held in [SWARM_TOKEN, AWS_SESSION, AWS_SECRET_KEY] {
        assert!(!get.argv.contains(held), "a secret was on a curl command line:\n{}", get.argv);
    }
}

/// Installs `script` as the command `name` in `dir`/bin, beside a `curl`
/// that logs its arguments (one per line, to the returned file) before it
/// runs the real one; returns the PATH that finds them first, and that log.
fn install_with_logging_curl(dir: &Path, name: &str, script: &str) -> (String, PathBuf) {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let curl = sh("command -v curl");
    let curl = String::from_utf8_lossy(&curl.stdout).trim().to_owned();
    assert!(!curl.is_empty(), "the {name} test needs curl, as the VMs do");
    let argv_log = dir.join("curl-argv");
    let shim = format!("#!/bin/sh\nprintf '%s\\n' \"$@\" >>'{}'\nexec '{curl}' \"$@\"\n", argv_log.display());
    for (file, content) in [("curl", shim.as_str()), (name, script)] {
        std::fs::write(bin.join(file), content).unwrap();
        std::fs::set_permissions(bin.join(file), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    (format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default()), argv_log)
}
