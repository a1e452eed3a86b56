//! Compiles Skaffold's API protos with `protox` (pure Rust, so no system `protoc` is
//! needed) and hands the descriptor set to `tonic-prost-build`. The descriptor set is
//! also kept in OUT_DIR: the JSON mapping (HTTP gateway, event log files, `/v1/state`)
//! is done by `prost-reflect` from it. The lean subsets of the event messages
//! (`proto/lean/`, what the fold reads) are compiled with `bytes::Bytes` for bytes.
use protox::prost::Message as _;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "skaffold/enums/enums.proto",
        "skaffold/v1/skaffold.proto",
        "skaffold/v2/skaffold.proto",
        "lean/v1.proto",
        "lean/v2.proto",
    ];
    let fds = protox::compile(protos, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("skaffold_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .type_attribute(".", "#[allow(clippy::all)]")
        // The lean subsets (proto/lean/) decode Skaffold's strings as slices of the
        // received message.
        .bytes(".lean")
        .compile_fds(fds)?;
    println!("cargo:rerun-if-changed=proto");
    revision();
    Ok(())
}

/// The git commit being built, for `skaffold_exporter_build_info{revision}`:
/// `$SKAFFOLD_EXPORTER_REVISION` when set (image builds without `.git`), else
/// `git rev-parse HEAD`, else `unknown` (a crate tarball, no git).
fn revision() {
    println!("cargo:rerun-if-env-changed=SKAFFOLD_EXPORTER_REVISION");
    let git = |args: &[&str]| -> Option<String> {
        let out = std::process::Command::new("git").args(args).output().ok()?;
        let s = String::from_utf8(out.stdout).ok()?.trim().to_owned();
        (out.status.success() && !s.is_empty()).then_some(s)
    };
    let from_env = std::env::var("SKAFFOLD_EXPORTER_REVISION")
        .ok()
        .filter(|s| !s.is_empty());
    // Only a checkout of this crate counts, not a repository around a tarball.
    let ours = git(&["rev-parse", "--show-toplevel"]).is_some_and(|top| {
        std::path::Path::new(&top).canonicalize().ok()
            == std::env::var("CARGO_MANIFEST_DIR")
                .ok()
                .and_then(|d| std::path::Path::new(&d).canonicalize().ok())
    });
    let rev = from_env
        .or_else(|| ours.then(|| git(&["rev-parse", "HEAD"])).flatten())
        .unwrap_or_else(|| "unknown".to_owned());
    if ours {
        // Rebuild when HEAD moves: HEAD itself, the branch it points at, packed refs.
        let mut watch = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
        watch.extend(git(&["symbolic-ref", "-q", "HEAD"]));
        for p in watch {
            if let Some(path) = git(&["rev-parse", "--git-path", &p])
                && std::path::Path::new(&path).exists()
            {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
    println!("cargo:rustc-env=SKAFFOLD_EXPORTER_REVISION={rev}");
}
