//! `cargo xtask setup`: everything building and testing xdp-guard needs, installed only
//! when missing. Each step prints one line (`ok ...`, `installed ...`, `FAILED ...`); a
//! failure says what is missing and how to fix it, and the other steps still run.
use std::{
    fs,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::Command,
    time::{Instant, SystemTime},
};

use anyhow::{Context as _, anyhow, bail};
use clap::Args;

use crate::cmd;

/// Debian packages the tests, benchmarks and demos use. Extend here.
pub const DEBIAN_PACKAGES: &[&str] = &[
    "iproute2",
    "bpftool",
    "nftables",
    "iptables",
    "tcpdump",
    "hping3",
    "netsniff-ng",
    "apache2",
    "apache2-utils",
    "wrk",
    "xdp-tools",
    "tmux",
    "net-tools",
    "procps",
    "curl",
];

/// The bpf-linker release that works with aya 0.14 and LLVM 22.
const BPF_LINKER_VERSION: &str = "0.13.0";

const BPFFS: &str = "/sys/fs/bpf";

#[derive(Args)]
pub struct Options {}

pub fn run(_options: Options) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut report = Report::default();
    match nightly() {
        Ok(nightly) => {
            report.step("nightly", Ok(nightly.summary.clone()));
            let rust_src = ensure_component(Some("nightly"), "rust-src");
            report.step("rust-src", rust_src.map(String::from));
            report.step("bpf-linker", bpf_linker(&nightly));
        }
        Err(err) => {
            report.step("nightly", Err(err));
            report.skipped("rust-src", "needs the nightly toolchain");
            report.skipped("bpf-linker", "needs the nightly toolchain");
        }
    }
    report.step("debian packages", debian_packages());
    report.step("bpffs", bpffs());

    if !report.incomplete.is_empty() {
        bail!(
            "setup incomplete: {} (see above)",
            report.incomplete.join(", ")
        );
    }
    eprintln!("setup: done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// One line per step, and the steps that did not finish.
#[derive(Default)]
struct Report {
    incomplete: Vec<&'static str>,
}

impl Report {
    fn step(&mut self, step: &'static str, result: anyhow::Result<String>) {
        match result {
            Ok(summary) => eprintln!("setup: {step:<16} {summary}"),
            Err(err) => {
                eprintln!("setup: {step:<16} FAILED: {err:#}");
                self.incomplete.push(step);
            }
        }
    }

    fn skipped(&mut self, step: &'static str, why: &str) {
        eprintln!("setup: {step:<16} skipped: {why}");
        self.incomplete.push(step);
    }
}

/// What later steps need to know about the nightly toolchain.
struct Nightly {
    /// e.g. 22, from `LLVM version: 22.1.4`.
    llvm_major: u32,
    sysroot: PathBuf,
    summary: String,
}

fn rustup() -> Command {
    Command::new("rustup")
}

/// The nightly toolchain (aya-build compiles the eBPF crate with it), installed if absent.
fn nightly() -> anyhow::Result<Nightly> {
    which::which("rustup").map_err(|_| {
        anyhow!(
            "`rustup` not found on PATH: install it (https://rustup.rs) and put \
             ~/.cargo/bin on PATH"
        )
    })?;
    let version = || cmd::output(rustup().args(["run", "nightly", "rustc", "-vV"]));
    let (version, installed) = match version() {
        Ok(version) => (version, false),
        Err(_) => {
            let mut install = rustup();
            install.args(["toolchain", "install", "nightly", "--profile", "minimal"]);
            install.arg("--no-self-update");
            cmd::run(&mut install).context(
                "the nightly toolchain is missing and installing it failed (no network?); \
                 install a nightly whose LLVM has a bpf-linker feature (llvm-21, llvm-22, ...)",
            )?;
            (version()?, true)
        }
    };
    let field = |key: &str| {
        version
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .map(str::trim)
            .ok_or_else(|| anyhow!("`rustc +nightly -vV` has no `{key}` line"))
    };
    let release = field("release:")?;
    let llvm = field("LLVM version:")?;
    let llvm_major = llvm
        .split('.')
        .next()
        .and_then(|major| major.parse().ok())
        .ok_or_else(|| anyhow!("cannot read the LLVM major version from `{llvm}`"))?;
    let sysroot = cmd::output(rustup().args(["run", "nightly", "rustc", "--print", "sysroot"]))?;
    Ok(Nightly {
        llvm_major,
        sysroot: PathBuf::from(sysroot.trim()),
        summary: format!(
            "{} (rustc {release}, LLVM {llvm})",
            if installed { "installed" } else { "ok" }
        ),
    })
}

/// Adds a rustup component unless it is installed; `None` is the workspace's toolchain.
pub fn ensure_component(toolchain: Option<&str>, component: &str) -> anyhow::Result<&'static str> {
    let mut list = rustup();
    list.args(["component", "list", "--installed"]);
    if let Some(toolchain) = toolchain {
        list.args(["--toolchain", toolchain]);
    }
    let prefix = format!("{component}-");
    let installed = cmd::output(&mut list)?
        .lines()
        .any(|line| line == component || line.starts_with(&prefix));
    if installed {
        return Ok("ok");
    }
    let mut add = rustup();
    add.args(["component", "add", component]);
    if let Some(toolchain) = toolchain {
        add.args(["--toolchain", toolchain]);
    }
    cmd::run(&mut add).with_context(|| format!("installing {component} (needs network)"))?;
    Ok("installed")
}

/// Where setup keeps the LLVM prefix bpf-linker links against, and its stamp.
fn cache_dir() -> anyhow::Result<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".cache"),
    };
    Ok(base.join("xdp-guard"))
}

fn cargo_bin_dir() -> anyhow::Result<PathBuf> {
    match std::env::var_os("CARGO_HOME") {
        Some(dir) if !dir.is_empty() => Ok(PathBuf::from(dir).join("bin")),
        _ => Ok(
            PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".cargo/bin"),
        ),
    }
}

/// bpf-linker built against the nightly toolchain's own libLLVM, so the bitcode rustc
/// emits and the LLVM that links it agree. Reinstalled when the stamp written after the
/// last build does not name this LLVM, or when the binary no longer runs.
fn bpf_linker(nightly: &Nightly) -> anyhow::Result<String> {
    let major = nightly.llvm_major;
    let libllvm = toolchain_libllvm(&nightly.sysroot, major)?;
    let libllvm_name = libllvm
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let cache = cache_dir()?;
    let prefix = cache.join(format!("llvm-{major}"));
    link_libllvm(&prefix.join("lib"), &libllvm, &libllvm_name)?;

    let stamp_path = cache.join("bpf-linker.stamp");
    let wanted = format!("bpf-linker {BPF_LINKER_VERSION} llvm-{major} {libllvm_name}");
    let Err(reason) = check_bpf_linker(&stamp_path, &wanted) else {
        return Ok(format!("ok ({wanted})"));
    };

    eprintln!("setup: bpf-linker: {reason}; building {wanted} (about a minute)");
    let mut install = cmd::cargo();
    install
        .args(["install", "bpf-linker", "--locked", "--force"])
        .args(["--version", BPF_LINKER_VERSION, "--no-default-features"])
        .args(["--features", &format!("llvm-{major}")])
        .env("LLVM_PREFIX", &prefix);
    cmd::run(&mut install).with_context(|| {
        format!(
            "building bpf-linker failed; the command was: LLVM_PREFIX={} {}",
            prefix.display(),
            cmd::display(&install)
        )
    })?;
    let linker = which::which("bpf-linker").with_context(|| {
        format!(
            "bpf-linker was installed but is not on PATH: export PATH=\"{}:$PATH\"",
            cargo_bin_dir().unwrap_or_default().display()
        )
    })?;
    let installed = cargo_bin_dir()?.join("bpf-linker");
    if fs::canonicalize(&linker).ok() != fs::canonicalize(&installed).ok() {
        bail!(
            "{} shadows the freshly built {} on PATH: remove it or put {} first",
            linker.display(),
            installed.display(),
            installed.parent().unwrap_or(Path::new("")).display()
        );
    }
    bpf_linker_version(&linker).context("the freshly built bpf-linker does not run")?;
    fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
    fs::write(&stamp_path, format!("{wanted}\n"))
        .with_context(|| format!("writing {}", stamp_path.display()))?;
    Ok(format!("installed ({wanted})"))
}

/// Ok when the installed bpf-linker is the one `wanted` describes; else why it is not.
fn check_bpf_linker(stamp_path: &Path, wanted: &str) -> Result<(), String> {
    let linker = which::which("bpf-linker").map_err(|_| "not found on PATH".to_owned())?;
    let version = bpf_linker_version(&linker).map_err(|err| format!("{err:#}"))?;
    if version != format!("bpf-linker {BPF_LINKER_VERSION}") {
        return Err(format!("found `{version}`"));
    }
    let stamp = fs::read_to_string(stamp_path).map_err(|_| {
        format!(
            "no {} (LLVM it was built for unknown)",
            stamp_path.display()
        )
    })?;
    if stamp.trim() != wanted {
        return Err(format!("built for `{}`", stamp.trim()));
    }
    // Someone ran `cargo install bpf-linker` after setup did: the stamp no longer applies.
    let modified = |path: &Path| fs::metadata(path).and_then(|meta| meta.modified()).ok();
    if modified(&linker).unwrap_or(SystemTime::UNIX_EPOCH)
        > modified(stamp_path).unwrap_or(SystemTime::UNIX_EPOCH)
    {
        return Err(format!(
            "{} was replaced after setup built it",
            linker.display()
        ));
    }
    Ok(())
}

/// `bpf-linker --version`, run without the LD_LIBRARY_PATH rustup sets, so a binary that
/// cannot find its libLLVM on its own is caught here rather than in the eBPF build.
fn bpf_linker_version(linker: &Path) -> anyhow::Result<String> {
    let mut version = Command::new(linker);
    version.arg("--version").env_remove("LD_LIBRARY_PATH");
    Ok(cmd::output(&mut version)?.trim().to_owned())
}

/// The real `libLLVM.so.<major>*` file shipped in the toolchain's `lib/`.
fn toolchain_libllvm(sysroot: &Path, major: u32) -> anyhow::Result<PathBuf> {
    let lib = sysroot.join("lib");
    let prefix = format!("libLLVM.so.{major}");
    let mut found: Vec<(u64, PathBuf)> = fs::read_dir(&lib)
        .with_context(|| format!("reading {}", lib.display()))?
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().starts_with(&prefix))
        .filter_map(|entry| {
            let meta = fs::symlink_metadata(entry.path()).ok()?;
            meta.is_file().then(|| (meta.len(), entry.path()))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, path)| path).ok_or_else(|| {
        anyhow!(
            "no {prefix}* in {}: bpf-linker links against the toolchain's shared LLVM; \
             reinstall the nightly toolchain",
            lib.display()
        )
    })
}

/// `lib/libLLVM.so` (for the build) and `lib/<soname>` (for the runtime loader, through the
/// rpath bpf-linker records) both pointing at the toolchain's libLLVM.
fn link_libllvm(lib: &Path, libllvm: &Path, libllvm_name: &str) -> anyhow::Result<()> {
    fs::create_dir_all(lib).with_context(|| format!("creating {}", lib.display()))?;
    for name in ["libLLVM.so", libllvm_name] {
        let link = lib.join(name);
        if fs::read_link(&link).ok().as_deref() == Some(libllvm) {
            continue;
        }
        if fs::symlink_metadata(&link).is_ok() {
            fs::remove_file(&link).with_context(|| format!("removing {}", link.display()))?;
        }
        symlink(libllvm, &link).with_context(|| format!("creating {}", link.display()))?;
    }
    Ok(())
}

fn debian_packages() -> anyhow::Result<String> {
    let mut missing = Vec::new();
    for package in DEBIAN_PACKAGES {
        let status = Command::new("dpkg-query")
            .args(["-W", "-f=${Status}", package])
            .output()
            .context("`dpkg-query` not found: these steps expect Debian or Ubuntu")?;
        if String::from_utf8_lossy(&status.stdout).trim() != "install ok installed" {
            missing.push(*package);
        }
    }
    if missing.is_empty() {
        return Ok(format!("ok ({} packages)", DEBIAN_PACKAGES.len()));
    }
    let missing_list = missing.join(" ");
    if !cmd::is_root() {
        bail!(
            "missing {missing_list}; as root run: apt-get update && apt-get install -y {missing_list}"
        );
    }
    eprintln!("setup: debian packages: installing {missing_list}");
    cmd::run(Command::new("apt-get").arg("update")).context("apt-get update")?;
    cmd::run(
        Command::new("apt-get")
            .args(["install", "-y"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    Ok(format!("installed {missing_list}"))
}

/// bpffs at /sys/fs/bpf, where xdp-guard pins its maps and links.
fn bpffs() -> anyhow::Result<String> {
    let mounts = fs::read_to_string("/proc/mounts").context("reading /proc/mounts")?;
    let mounted = mounts.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.get(1) == Some(&BPFFS) && fields.get(2) == Some(&"bpf")
    });
    if mounted {
        return Ok(format!("ok ({BPFFS})"));
    }
    if !cmd::is_root() {
        bail!("not mounted; as root run: mount -t bpf bpf {BPFFS}");
    }
    cmd::run(Command::new("mount").args(["-t", "bpf", "bpf", BPFFS]))?;
    Ok(format!("mounted at {BPFFS}"))
}
