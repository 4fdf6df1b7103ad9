//! The clock every step is stamped with (CLOCK_MONOTONIC: what
//! `bpf_ktime_get_ns` returns) and the wall clock it maps to. One home for
//! both: the live runner, the nftables reader and the file sinks all read
//! it.

/// Kernel monotonic time, ns.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we pass; CLOCK_MONOTONIC
    // always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Kernel monotonic ns to wall-clock ns, so timestamps read as dates.
fn wall_ns(mono: u64) -> u64 {
    let now_wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    now_wall.saturating_sub(monotonic_ns().saturating_sub(mono))
}

/// How a file sink dates its records: wall-clock ns = the kernel's
/// monotonic ns + this offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WallClock(pub u64);

impl WallClock {
    /// The live clocks' offset, read once: a run's records are all dated
    /// by it (one read, not two per record, and a later step of the wall
    /// clock does not reorder them).
    pub fn now() -> WallClock {
        WallClock(wall_ns(0))
    }

    /// Monotonic ns to wall-clock ns.
    pub fn wall_ns(self, mono: u64) -> u64 {
        mono.saturating_add(self.0)
    }
}
