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
pub fn wall_ns(mono: u64) -> u64 {
    let now_wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    now_wall.saturating_sub(monotonic_ns().saturating_sub(mono))
}

/// How a file sink dates its records: kernel monotonic ns to wall-clock ns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WallClock {
    /// The live clocks, read for each record ([`wall_ns`]).
    #[default]
    Live,
    /// A fixed offset added to monotonic time: the same journeys are
    /// always written as the same bytes (golden tests).
    Offset(u64),
}

impl WallClock {
    /// Monotonic ns to wall-clock ns.
    pub fn wall_ns(self, mono: u64) -> u64 {
        match self {
            WallClock::Live => wall_ns(mono),
            WallClock::Offset(offset) => mono.saturating_add(offset),
        }
    }
}
