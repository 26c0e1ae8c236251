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
