//! Compiles `proto/certfed/v1/*.proto` with protox (no system protoc) and
//! writes the descriptor set, imports included, for gRPC server reflection.
//!
//! It also restores mode 0600 on the demo private keys in `certs-example/`:
//! git does not record file modes, and certfed refuses private keys that group
//! or others can read, so a fresh checkout would otherwise not start the example.
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
    println!("cargo:rerun-if-changed=certs-example");
    let fds = protox::compile(files, ["proto"])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out.join("certfed_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    restrict_demo_keys();
    Ok(())
}

fn restrict_demo_keys() {
    use std::os::unix::fs::PermissionsExt;
    let Ok(dir) = fs::read_dir("certs-example") else {
        return;
    };
    for entry in dir.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "key") {
            let _ = fs::set_permissions(&path, fs::Permissions::from_mode(0o600));
        }
    }
}
