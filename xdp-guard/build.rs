//! Builds the XDP program (xdp-guard-ebpf) for bpfel-unknown-none with the nightly toolchain
//! and bpf-linker, and leaves it in OUT_DIR for `include_bytes_aligned!`.
use anyhow::{Context as _, anyhow};

fn main() -> anyhow::Result<()> {
    let metadata = cargo_metadata()?;
    let ebpf = metadata
        .iter()
        .find(|(name, _)| name == "xdp-guard-ebpf")
        .ok_or_else(|| anyhow!("xdp-guard-ebpf not found in the workspace"))?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "xdp-guard-ebpf",
            root_dir: &ebpf.1,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
    .context("building the eBPF object failed; `cargo xtask setup` installs what it needs")
}

/// (package name, package directory) of every workspace member, from `cargo metadata`.
fn cargo_metadata() -> anyhow::Result<Vec<(String, String)>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        return Err(anyhow!(
            "cargo metadata: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text = String::from_utf8(out.stdout)?;
    // Tiny scan instead of a JSON dependency: each package has "name" and "manifest_path".
    let mut found = Vec::new();
    for pkg in text.split("\"manifest_path\":\"").skip(1) {
        let Some(end) = pkg.find('"') else { continue };
        let manifest = &pkg[..end];
        let dir = manifest.trim_end_matches("/Cargo.toml").to_string();
        let name = dir.rsplit('/').next().unwrap_or_default().to_string();
        found.push((name, dir));
    }
    Ok(found)
}
