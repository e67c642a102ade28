//! `BPF_MAP_LOOKUP_BATCH` for per-CPU hash maps (aya 0.14 has no batch operations): one
//! syscall per few thousand entries instead of two per entry (get_next_key + lookup).

use std::{
    io,
    mem::size_of,
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

use aya::{Pod, maps::MapData};

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// The batch part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Every entry of a per-CPU hash map, each folded by `f` over its per-CPU values as they are
/// read: no allocation per entry (the per-CPU values go through one reused buffer).
pub fn fold_all_percpu<K: Pod, V: Pod, T>(
    map: &MapData,
    ncpus: usize,
    batch: u32,
    mut f: impl FnMut(&K, &[V]) -> T,
) -> io::Result<Vec<(K, T)>> {
    let mut out = Vec::new();
    walk_percpu(map, ncpus, batch, |k: &K, v: &[V]| out.push((*k, f(k, v))))?;
    Ok(out)
}

/// Hand every entry of a per-CPU hash map to `f` (its key and one value per possible CPU),
/// `batch` entries per `BPF_MAP_LOOKUP_BATCH` call, through buffers reused for the whole walk.
/// Returns the time spent inside those syscalls (the benchmark reports it).
pub fn walk_percpu<K: Pod, V: Pod>(
    map: &MapData,
    ncpus: usize,
    batch: u32,
    mut f: impl FnMut(&K, &[V]),
) -> io::Result<Duration> {
    let mut per_cpu: Vec<V> = Vec::with_capacity(ncpus);
    // The kernel lays per-CPU values out at 8-byte strides.
    let stride = size_of::<V>().div_ceil(8) * 8;
    let batch = batch.max(1) as usize;
    let mut keys = vec![0u8; batch * size_of::<K>()];
    let mut values = vec![0u8; batch * ncpus * stride];
    // The hash maps' batch token is one 8-byte bucket index.
    let mut token_in = [0u8; 8];
    let mut token_out = [0u8; 8];
    let mut first = true;
    let mut in_kernel = Duration::ZERO;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first {
                0
            } else {
                token_in.as_mut_ptr() as u64
            },
            out_batch: token_out.as_mut_ptr() as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: batch as u32,
            map_fd: map.fd().as_fd_raw(),
            ..Default::default()
        };
        let started = Instant::now();
        // SAFETY: attr points at buffers sized for `count` keys and values that outlive
        // the call; the kernel writes at most that much.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_BATCH,
                &mut attr as *mut BatchAttr,
                size_of::<BatchAttr>() as u32,
            )
        };
        in_kernel += started.elapsed();
        let err = (rc < 0).then(io::Error::last_os_error);
        let done = match &err {
            None => false,
            Some(e) if e.raw_os_error() == Some(libc::ENOENT) => true,
            Some(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("BPF_MAP_LOOKUP_BATCH: {e}"),
                ));
            }
        };
        for i in 0..attr.count as usize {
            // SAFETY: the kernel filled `count` keys and values of the map's sizes; K and V
            // are Pod and read unaligned.
            let key: K =
                unsafe { std::ptr::read_unaligned(keys[i * size_of::<K>()..].as_ptr().cast()) };
            per_cpu.clear();
            per_cpu.extend((0..ncpus).map(|cpu| unsafe {
                std::ptr::read_unaligned::<V>(values[(i * ncpus + cpu) * stride..].as_ptr().cast())
            }));
            f(&key, &per_cpu);
        }
        if done {
            return Ok(in_kernel);
        }
        token_in = token_out;
        first = false;
    }
}

trait RawFd {
    fn as_fd_raw(&self) -> u32;
}

impl RawFd for aya::maps::MapFd {
    fn as_fd_raw(&self) -> u32 {
        use std::os::fd::AsFd as _;
        self.as_fd().as_raw_fd() as u32
    }
}
