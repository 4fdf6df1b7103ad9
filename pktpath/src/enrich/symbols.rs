//! Kernel addresses to symbols, from /proc/kallsyms (read once, lazily).
//!
//! Source file and line need the kernel's DWARF, which stock machines do not
//! have; the tracepoint catalogue (`sites`) gives the source file instead.

use std::fs;

#[derive(Debug, Default)]
pub struct Symbols {
    /// Sorted by address.
    syms: Option<Vec<(u64, String)>>,
}

impl Symbols {
    fn load() -> Vec<(u64, String)> {
        let text = fs::read_to_string("/proc/kallsyms").unwrap_or_default();
        let mut v: Vec<(u64, String)> = text
            .lines()
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                let addr = u64::from_str_radix(it.next()?, 16).ok()?;
                let kind = it.next()?;
                let name = it.next()?;
                (addr != 0 && matches!(kind, "t" | "T")).then(|| (addr, name.to_string()))
            })
            .collect();
        v.sort_unstable();
        v
    }

    /// "function+0xoff" for a kernel text address.
    pub fn resolve(&mut self, addr: u64) -> Option<String> {
        if addr == 0 {
            return None;
        }
        let syms = self.syms.get_or_insert_with(Self::load);
        let i = syms.partition_point(|(a, _)| *a <= addr);
        let (base, name) = syms.get(i.checked_sub(1)?)?;
        Some(format!("{name}+{:#x}", addr - base))
    }
}
