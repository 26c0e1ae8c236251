//! The binaries' command lines: clear errors and distinct exit codes.

use std::process::{Command, Output};

fn run(binary: &str, args: &[&str]) -> Output {
    Command::new(tests::binary(binary)).args(args).env_remove("RUST_LOG").output().expect("the binary runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_bad_value_names_itself_and_exits_2() {
    let output = run("node", &["127.0.0.1", "70000"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("`70000` isn't a port number"), "{}", stderr(&output));

    let output = run("registry", &["--ttl", "0s"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("greater than zero"), "{}", stderr(&output));
}

#[test]
fn a_list_of_registries_missing_a_port_or_with_a_bad_entry_exits_2_naming_it() {
    let output = run("node", &["127.0.0.1:8080,10.0.0.2"]);
    assert_eq!(output.status.code(), Some(2));
    let said = stderr(&output);
    assert!(said.contains("<REGISTRY_PORT> is required: registry `10.0.0.2` names no port"), "{said}");
    assert!(said.contains("Usage: node"), "{said}");

    let output = run("node", &["127.0.0.1:8080,,10.0.0.2:8080"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("has an empty entry"), "{}", stderr(&output));
}

#[test]
fn a_duration_too_long_to_add_to_a_clock_is_refused() {
    for (binary, args) in [
        ("registry", &["--ttl", "100000000000s"][..]),
        ("node", &["127.0.0.1", "1", "--heartbeat-interval", "100000000000"]),
        ("launcher", &["up", "--timeout", "100000000000s"]),
    ] {
        let output = run(binary, args);
        assert_eq!(output.status.code(), Some(2), "{binary}: {}", stderr(&output));
        assert!(stderr(&output).contains("longer than the longest duration accepted, 365 days"), "{}", stderr(&output));
    }
}

#[test]
fn an_address_in_use_exits_3_saying_which() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    for (binary, args) in [("registry", vec!["--listen", &addr]), ("node", vec!["127.0.0.1", "1", "--listen", &addr])] {
        let output = run(binary, &args);
        assert_eq!(output.status.code(), Some(3), "{binary}");
        assert!(stderr(&output).contains(&format!("failed to listen on {addr}")), "{}", stderr(&output));
    }
}

#[test]
fn a_join_token_on_the_command_line_is_refused_saying_where_it_goes() {
    let secret = "ab".repeat(32);
    for (binary, args) in [
        ("registry", vec!["--join-token", &secret]),
        ("node", vec!["127.0.0.1", "1", "--join-token", &secret]),
        ("node", vec!["send", "--registry", "h:1", "--group", "1", "--join-token", &secret, "x"]),
        ("launcher", vec!["up", "--join-token", &secret]),
    ] {
        let output = run(binary, &args);
        let stderr = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{binary}: {stderr}");
        assert!(stderr.contains("--join-token-file") && stderr.contains("HIT6_JOIN_TOKEN"), "{binary}: {stderr}");
        assert!(!stderr.contains(&secret), "{binary} echoed the token: {stderr}");
    }
}

#[test]
fn an_unusable_token_or_key_file_exits_4_without_showing_it() {
    let dir = std::env::temp_dir().join(format!("hit6-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("token");
    std::fs::write(&bad, "not-a-token-but-a-secret-all-the-same").unwrap();
    let bad = bad.to_string_lossy().into_owned();
    let runs = |bad: &str| {
        [
            run("registry", &["--join-token-file", bad]),
            run("node", &["127.0.0.1", "1", "--join-token-file", bad]),
            run("node", &["127.0.0.1", "1", "--key-file", bad]),
        ]
    };
    // Written with the usual umask, others may read it: refused for that first.
    let exposed = runs(&bad);
    std::fs::set_permissions(&bad, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let private = runs(&bad);
    std::fs::remove_dir_all(&dir).unwrap();
    for (outputs, said) in [(exposed, &["chmod 600"][..]), (private, &["64 hexadecimal", "does not hold a key"])] {
        for output in outputs {
            let stderr = stderr(&output);
            assert_eq!(output.status.code(), Some(4), "{stderr}");
            assert!(said.iter().any(|s| stderr.contains(s)), "{said:?}: {stderr}");
            assert!(!stderr.contains("secret-all-the-same"), "the file's content was shown: {stderr}");
        }
    }
}
