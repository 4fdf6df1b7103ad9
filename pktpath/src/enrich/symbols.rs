//! Kernel addresses to symbols, from /proc/kallsyms (read once, lazily).
//!
//! Source file and line need the kernel's DWARF, which stock machines do not
//! have; the tracepoint catalogue (`sites`) gives the source file instead.

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader};

#[derive(Debug, Default)]
pub struct Symbols {
    syms: Option<Table>,
    /// Addresses already resolved: the free and drop locations of a run
    /// are a few call sites seen again and again.
    seen: HashMap<u64, String>,
}

/// Text symbols sorted by address; names in one buffer (a stock kernel
/// has ~150,000: one allocation each would be several MB more).
#[derive(Debug, Default)]
struct Table {
    /// Addresses are kept as offsets from this one (kernel and module
    /// text span well under 4 GB): half the table's size.
    base: u64,
    /// Address (offset from `base`), and the name's end in `names` (it
    /// starts where the previous one ends).
    addrs: Vec<(u32, u32)>,
    names: String,
}

impl Symbols {
    /// Reads /proc/kallsyms line by line (not whole: it is ~6 MB of
    /// text, most of it other kinds of symbols).
    fn load() -> Table {
        let Ok(f) = fs::File::open("/proc/kallsyms") else {
            return Table::default();
        };
        // Address, and where the name is in `read`, as read.
        let mut read = String::new();
        let mut found: Vec<(u64, u32, u32)> = Vec::new();
        for line in BufReader::new(f).lines().map_while(Result::ok) {
            let mut it = line.split_whitespace();
            let (Some(addr), Some(kind), Some(name)) = (it.next(), it.next(), it.next()) else {
                continue;
            };
            let Ok(addr) = u64::from_str_radix(addr, 16) else {
                continue;
            };
            if addr != 0 && matches!(kind, "t" | "T") {
                found.push((addr, read.len() as u32, name.len() as u32));
                read.push_str(name);
            }
        }
        found.sort_unstable_by_key(|&(addr, at, _)| (addr, at));
        let base = found.first().map_or(0, |f| f.0);
        let mut t = Table {
            base,
            addrs: Vec::with_capacity(found.len()),
            names: String::with_capacity(read.len()),
        };
        for (addr, at, len) in found {
            let Ok(off) = u32::try_from(addr - base) else {
                break;
            };
            t.names.push_str(&read[at as usize..(at + len) as usize]);
            t.addrs.push((off, t.names.len() as u32));
        }
        t
    }

    /// Reads the table now, not at the first address to resolve: that
    /// comes with the first packets, when reading (~70 ms) would stall
    /// the ring buffer's reader and its transient memory (~5 MB) would
    /// add to the journeys'.
    pub fn preload(&mut self) {
        self.syms.get_or_insert_with(Self::load);
    }

    /// "function+0xoff" for a kernel text address.
    pub fn resolve(&mut self, addr: u64) -> Option<String> {
        if addr == 0 {
            return None;
        }
        if let Some(s) = self.seen.get(&addr) {
            return Some(s.clone());
        }
        let t = self.syms.get_or_insert_with(Self::load);
        let off = u32::try_from(addr.checked_sub(t.base)?).unwrap_or(u32::MAX);
        let i = t.addrs.partition_point(|(a, _)| *a <= off).checked_sub(1)?;
        let (start_off, end) = t.addrs[i];
        let base = t.base + start_off as u64;
        let start = i.checked_sub(1).map_or(0, |p| t.addrs[p].1);
        let name = t.names.get(start as usize..end as usize)?;
        let text = format!("{name}+{:#x}", addr - base);
        // Bounded: addresses from a corrupt or hostile stream cannot grow it.
        if self.seen.len() < 4096 {
            self.seen.insert(addr, text.clone());
        }
        Some(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[ignore = "needs root (reads kernel addresses): scripts/test.sh runs it with --include-ignored"]
    fn resolves_a_function_of_the_running_kernel() {
        let text = fs::read_to_string("/proc/kallsyms").unwrap_or_default();
        let Some(addr) = text.lines().find_map(|l| {
            let mut it = l.split_whitespace();
            let a = u64::from_str_radix(it.next()?, 16).ok()?;
            (it.next()? == "T" && it.next()? == "ip_rcv" && a != 0).then_some(a)
        }) else {
            panic!("/proc/kallsyms shows no address of ip_rcv (not root?)");
        };
        let mut s = Symbols::default();
        s.preload();
        assert_eq!(s.resolve(addr + 0x10).as_deref(), Some("ip_rcv+0x10"));
        assert_eq!(s.resolve(addr).as_deref(), Some("ip_rcv+0x0"));
    }
}
