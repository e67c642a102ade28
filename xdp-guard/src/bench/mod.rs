//! Benchmarks (not tests): figures and ratios against a baseline measured in the same run.
//! Driven by `cargo xtask bench` through the `xdp-guard-bench` binary ([`report::run`]).
//!
//! - [`datapath`]: per-packet cost by class and by blocklist size (BPF_PROG_TEST_RUN);
//! - [`throughput`]: drop throughput on a veth ([`veth::Bed`]) fed by the SYN-flood
//!   generator ([`flood`]), for xdp-guard and the alternatives;
//! - [`controller`], [`api_load`]: the per-source map read, API latency under `wrk`;
//! - [`store`]: what a durable change costs with a large blocklist;
//! - [`conns`]: the memo's netstat pipelines against sock_diag on many sockets;
//! - [`report`], [`svg`]: the Markdown report and its charts.

pub mod api_load;
pub mod conns;
pub mod controller;
pub mod datapath;
pub mod flood;
pub mod objects;
pub mod report;
pub mod store;
pub mod svg;
pub mod throughput;
pub mod veth;

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
    pin_pid_to_cpu(0, cpu)
}

/// Pin a thread (0: the calling one) to one CPU.
pub fn pin_pid_to_cpu(pid: i32, cpu: usize) -> std::io::Result<()> {
    // SAFETY: a zeroed cpu_set_t with one bit set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Run a thread (0: the calling one) under SCHED_FIFO at `priority`, so that other work on
/// the machine does not take its CPU while it measures. The kernel's RT throttling
/// (`sched_rt_runtime_us`, 95% by default) still leaves the CPU to others now and then.
pub fn realtime(pid: i32, priority: i32) -> std::io::Result<()> {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: a valid sched_param for the duration of the call.
    if unsafe { libc::sched_setscheduler(pid, libc::SCHED_FIFO, &param) } != 0 {
        return Err(std::io::Error::last_os_error());
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
