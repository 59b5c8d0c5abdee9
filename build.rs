//! Compiles the protobuf schema into Rust with protox (a protobuf compiler
//! written in Rust), so building needs no `protoc` binary.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/hashfed/v1/signal.proto",
        "proto/hashfed/v1/match.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
