//! Compiles the protobuf schema into Rust with protox (a protobuf compiler
//! written in Rust), so building needs no `protoc` binary. The compiled
//! descriptors are also written to `OUT_DIR` for gRPC server reflection
//! (which is what lets `grpcurl` call the node without the .proto files).

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/hashfed/v1/signal.proto",
        "proto/hashfed/v1/match.proto",
        "proto/hashfed/v1/admin.proto",
        "proto/hashfed/v1/federation.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("hashfed_descriptors.bin"),
        descriptors.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
