// Generates the protobuf messages and the tonic client/server from
// proto/skiff/v1/agent.proto. Needs `protoc` (Debian: protobuf-compiler,
// installed by scripts/setup.sh) or PROTOC pointing at one.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/skiff/v1/agent.proto");
    tonic_prost_build::configure()
        .build_transport(false)
        .compile_protos(&["proto/skiff/v1/agent.proto"], &["proto"])?;
    Ok(())
}
