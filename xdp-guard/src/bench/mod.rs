//! Benchmarks (not tests): figures and ratios against a baseline measured in the same run.
//! Driven by `cargo xtask bench` through the `xdp-guard-bench` binary.

pub mod datapath;

/// min / median / max of a sample.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Spread {
    pub min: f64,
    pub median: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(samples: &mut [f64]) -> Self {
        samples.sort_by(|a, b| a.total_cmp(b));
        let n = samples.len();
        let median = if n == 0 {
            f64::NAN
        } else if n % 2 == 1 {
            samples[n / 2]
        } else {
            (samples[n / 2 - 1] + samples[n / 2]) / 2.0
        };
        Self {
            min: samples.first().copied().unwrap_or(f64::NAN),
            median,
            max: samples.last().copied().unwrap_or(f64::NAN),
        }
    }
}

/// One line describing the machine, printed with every figure.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    // Not available_parallelism(): the benchmark pins itself, which would report 1.
    let cpus = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_default();
    format!(
        "{cpu}, CPUs {} online, Linux {}",
        cpus.trim(),
        kernel.trim()
    )
}

/// Pin the calling thread to one CPU: per-CPU maps and cache state stay put between rounds.
pub fn pin_to_cpu(cpu: usize) -> std::io::Result<()> {
    // SAFETY: a zeroed cpu_set_t with one bit set, for the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread() {
        let s = Spread::of(&mut [5.0, 1.0, 3.0]);
        assert_eq!((s.min, s.median, s.max), (1.0, 3.0, 5.0));
        let s = Spread::of(&mut [4.0, 1.0, 3.0, 2.0]);
        assert_eq!(s.median, 2.5);
    }
}
