//! Compiles Skaffold's API protos with `protox` (pure Rust, so no system `protoc` is
//! needed) and hands the descriptor set to `tonic-prost-build`. The descriptor set is
//! also kept in OUT_DIR: the JSON mapping (HTTP gateway, event log files, `/v1/state`)
//! is done by `prost-reflect` from it.
use protox::prost::Message as _;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "skaffold/enums/enums.proto",
        "skaffold/v1/skaffold.proto",
        "skaffold/v2/skaffold.proto",
    ];
    let fds = protox::compile(protos, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("skaffold_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .type_attribute(".", "#[allow(clippy::all)]")
        .compile_fds(fds)?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
