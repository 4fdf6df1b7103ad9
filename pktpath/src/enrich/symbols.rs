//! Kernel addresses to symbols, from /proc/kallsyms (read once, lazily).
//!
//! Source file and line need the kernel's DWARF, which stock machines do not
//! have; the tracepoint catalogue (`sites`) gives the source file instead.

use std::collections::HashMap;
use std::fs;

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
    /// Address, and the name's end in `names` (it starts where the
    /// previous one ends).
    addrs: Vec<(u64, u32)>,
    names: String,
}

impl Symbols {
    fn load() -> Table {
        let text = fs::read_to_string("/proc/kallsyms").unwrap_or_default();
        let mut v: Vec<(u64, &str)> = text
            .lines()
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                let addr = u64::from_str_radix(it.next()?, 16).ok()?;
                let kind = it.next()?;
                let name = it.next()?;
                (addr != 0 && matches!(kind, "t" | "T")).then_some((addr, name))
            })
            .collect();
        v.sort_unstable();
        let mut t = Table {
            addrs: Vec::with_capacity(v.len()),
            names: String::with_capacity(v.iter().map(|(_, n)| n.len()).sum()),
        };
        for (addr, name) in v {
            t.names.push_str(name);
            t.addrs.push((addr, t.names.len() as u32));
        }
        t
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
        let i = t
            .addrs
            .partition_point(|(a, _)| *a <= addr)
            .checked_sub(1)?;
        let (base, end) = t.addrs[i];
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
    fn resolves_a_function_of_the_running_kernel() {
        let text = fs::read_to_string("/proc/kallsyms").unwrap_or_default();
        let Some(addr) = text.lines().find_map(|l| {
            let mut it = l.split_whitespace();
            let a = u64::from_str_radix(it.next()?, 16).ok()?;
            (it.next()? == "T" && it.next()? == "ip_rcv" && a != 0).then_some(a)
        }) else {
            eprintln!("SKIPPED: /proc/kallsyms shows no address of ip_rcv (not root?)");
            return;
        };
        let mut s = Symbols::default();
        assert_eq!(s.resolve(addr + 0x10).as_deref(), Some("ip_rcv+0x10"));
        assert_eq!(s.resolve(addr).as_deref(), Some("ip_rcv+0x0"));
    }
}
