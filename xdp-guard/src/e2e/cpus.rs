//! Which CPU plays which part.
//!
//! Attackers and clients are other machines at the other end of a wire. On the bed
//! everything shares the host's CPUs, so they are split in two:
//!
//! - the *outside* (the last CPU): the flood generator (at the lowest priority), the
//!   legitimate clients, and the transport of their packets through two veths and the
//!   bridge, which runs in the sender's softirq context, XDP verdicts included;
//! - the *server* (the other CPUs): Apache, the daemon and srv's network stack (through
//!   RPS, see `Bed`).
//!
//! The split is the same in every mode and for the baseline. With one CPU there is nothing
//! to split and everything shares it.
//!
//! Two more things keep the clients' latency about the server: they run `SCHED_FIFO`
//! ([`set_fifo`]), so the generator sharing their CPU cannot delay them, and [`Spinners`]
//! keep every CPU from halting.

/// CPUs of this machine (at most 64 are used).
pub fn count() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(64)
}

/// The CPU floods are sent from: the outside's.
pub fn generator() -> usize {
    split(count()).1
}

/// The server's CPUs: all but the last.
pub fn server() -> Vec<usize> {
    split(count()).0
}

/// The outside's CPU (generator and clients): the last.
pub fn outside() -> Vec<usize> {
    vec![split(count()).1]
}

/// (server CPUs, generator CPU) for `n` CPUs.
fn split(n: usize) -> (Vec<usize>, usize) {
    let n = n.clamp(1, 64);
    if n == 1 {
        return (vec![0], 0);
    }
    ((0..n - 1).collect(), n - 1)
}

/// `taskset -c` notation: `0,1,2`.
pub fn list(cpus: &[usize]) -> String {
    cpus.iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// A hexadecimal CPU mask, as `rps_cpus` takes it.
pub fn mask(cpus: &[usize]) -> String {
    let m = cpus.iter().fold(0u64, |m, c| m | (1u64 << (*c).min(63)));
    format!("{m:x}")
}

/// Keeps the calling thread on `cpus`.
pub fn pin_current_thread(cpus: &[usize]) -> std::io::Result<()> {
    // SAFETY: a zeroed cpu_set_t filled with CPU_SET, for the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for c in cpus {
            libc::CPU_SET(*c, &mut set);
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The calling thread to `SCHED_FIFO` at priority 1.
pub fn set_fifo() -> std::io::Result<()> {
    let param = libc::sched_param { sched_priority: 1 };
    // SAFETY: the calling thread, a valid policy and parameter.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// One busy thread per CPU at the lowest scheduling class (`SCHED_IDLE`: any other thread
/// that wants the CPU gets it at once). This VM's vCPUs halt when idle, and waking a halted
/// vCPU costs milliseconds now and then: a client waiting on an idle machine would see it in
/// its latency, one on a flooded (busy) machine would not, and a baseline would be measured
/// against a different machine than the flood. Kept spinning, no CPU ever halts.
pub struct Spinners {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Spinners {
    pub fn start() -> Spinners {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let threads = (0..count())
            .map(|cpu| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let _ = pin_current_thread(&[cpu]);
                    let param = libc::sched_param { sched_priority: 0 };
                    // SAFETY: the calling thread, a valid policy and parameter.
                    unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        Spinners { stop, threads }
    }
}

impl Drop for Spinners {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits() {
        assert_eq!(split(1), (vec![0], 0));
        assert_eq!(split(2), (vec![0], 1));
        assert_eq!(split(4), (vec![0, 1, 2], 3));
        assert_eq!(list(&[0, 1, 2]), "0,1,2");
        assert_eq!(mask(&[0]), "1");
        assert_eq!(mask(&[0, 1, 2]), "7");
    }
}
