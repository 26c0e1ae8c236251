//! Generates the gRPC client stubs from the vendored protos in `proto/`. protox parses them in
//! Rust, so building needs no `protoc` on the machine.

fn main() {
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(["proto/rpc.proto"], ["proto"])
        .unwrap_or_else(|err| panic!("failed to parse the etcd protos in proto/: {err}"));
    tonic_prost_build::configure()
        .build_server(false)
        .compile_fds(descriptors)
        .unwrap_or_else(|err| panic!("failed to generate the etcd gRPC client from proto/: {err}"));
}
