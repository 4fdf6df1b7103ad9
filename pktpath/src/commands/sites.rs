//! `pktpath sites`: every site pktpath can trace on this kernel.

use std::process::ExitCode;

use anyhow::Result;

use super::options::regex;
use crate::kernel;
use crate::kernel::btf::Inventory;
use crate::kernel::functions::FuncInventory;

pub fn list(re: Option<&str>, json: bool) -> Result<ExitCode> {
    let re = regex("sites", &re.map(str::to_string))?;
    let matches = |n: &str| re.as_ref().is_none_or(|r| r.is_match(n));
    let inv = Inventory::load()?;
    let funcs = FuncInventory::load()?;
    let mut out = std::io::stdout().lock();
    use std::io::Write;
    let plan = kernel::tracepoint::plan(&inv);
    let mut shown = 0;
    for tp in plan.slots.iter().filter(|t| matches(&t.name)) {
        let info = pktpath_core::sites::info(&tp.name);
        let when = pktpath_core::sites::AttachWhen::of(&tp.name);
        if json {
            let v = serde_json::json!({"site": tp.name, "kind": "tracepoint",
                "skb_arg": tp.skb_arg(), "subsystem": info.subsystem, "attachable": true,
                "attached": when.text()});
            writeln!(out, "{v}")?;
        } else {
            writeln!(
                out,
                "{:<40} tracepoint  arg {}   {:<10} {}{}",
                tp.name,
                tp.skb_arg().unwrap_or(0),
                info.subsystem,
                info.source,
                match when {
                    pktpath_core::sites::AttachWhen::Always => String::new(),
                    w => format!(" (attached {})", w.text()),
                }
            )?;
        }
        shown += 1;
    }
    for f in funcs.sites.iter().filter(|f| matches(&f.name)) {
        if json {
            writeln!(out, "{}", serde_json::to_string(f)?)?;
        } else {
            let arg = match (f.skb_arg, f.skb_ptrptr) {
                (Some(a), true) => format!("{a}**"),
                (Some(a), false) => a.to_string(),
                (None, _) => "-".to_string(),
            };
            let attach = match f.traceable {
                Some(true) => "attachable",
                Some(false) => "not attachable",
                None => "attachable: unknown",
            };
            writeln!(
                out,
                "{:<40} function    arg {arg:<3} {:<10} {}{}{}",
                f.name,
                f.subsystem,
                attach,
                if f.returns_skb { ", returns skb" } else { "" },
                f.module
                    .as_ref()
                    .map(|m| format!(" [{m}]"))
                    .unwrap_or_default()
            )?;
        }
        shown += 1;
    }
    if !json {
        eprintln!(
            "pktpath: {shown} sites; {} functions not in available_filter_functions, {} names \
             defined twice (left out)",
            funcs.untraceable.len(),
            funcs.ambiguous.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}
