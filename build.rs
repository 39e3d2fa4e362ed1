//! Compiles `proto/certfed/v1/*.proto` with protox (no system protoc) and
//! writes the descriptor set, imports included, for gRPC server reflection.
use prost::Message;
use std::{env, fs, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/certfed/v1/types.proto",
        "proto/certfed/v1/assistance.proto",
        "proto/certfed/v1/operator.proto",
        "proto/certfed/v1/federation.proto",
    ];
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(files, ["proto"])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out.join("certfed_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
