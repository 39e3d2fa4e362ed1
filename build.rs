//! Compiles `proto/certfed/v1/*.proto` with protox (no system protoc) and
//! writes the descriptor set, imports included, for gRPC server reflection.
//!
//! It also records the SHA-256 of each demo private key in `certs-example/`, so
//! that the binary can recognise those published keys (see
//! `transport::tls::check_private_permissions`). Everything it writes goes to
//! `OUT_DIR`; the source tree is only read.
use prost::Message;
use sha2::{Digest, Sha256};
use std::{env, fs, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/certfed/v1/types.proto",
        "proto/certfed/v1/assistance.proto",
        "proto/certfed/v1/incident.proto",
        "proto/certfed/v1/roster.proto",
        "proto/certfed/v1/operator.proto",
        "proto/certfed/v1/federation.proto",
    ];
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=certs-example");
    let fds = protox::compile(files, ["proto"])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out.join("certfed_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    fs::write(out.join("demo_keys.rs"), demo_key_digests()?)?;
    Ok(())
}

/// A Rust array expression of the SHA-256 digests of `certs-example/*.key`.
fn demo_key_digests() -> std::io::Result<String> {
    let mut digests = Vec::new();
    if let Ok(dir) = fs::read_dir("certs-example") {
        for entry in dir.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "key") {
                let d = Sha256::digest(fs::read(&path)?);
                digests.push(format!("{:?}", d.as_slice()));
            }
        }
    }
    digests.sort();
    Ok(format!("&[{}]", digests.join(", ")))
}
