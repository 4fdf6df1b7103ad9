//! The tracepoint backend: tp_btf programs (raw_tp where tp_btf cannot load)
//! on every network tracepoint of the running kernel that takes a packet.
//!
//! Lifecycle: `plan()` picks the tracepoints from BTF, `Tracer::start()` opens
//! the embedded object, splices the filter, writes the config, loads and
//! attaches; dropping the Tracer detaches everything (links are file
//! descriptors: they also go away when the process dies, however it dies).

use std::collections::BTreeSet;
use std::os::fd::AsFd;
use std::sync::Mutex;

use anyhow::{anyhow, bail, Context, Result};
use libbpf_rs::{Link, MapCore, MapFlags, MapHandle, Object, ObjectBuilder, OpenObject};

use super::btf::{Inventory, Tracepoint};
use super::fentry;
use super::functions::FuncSite;
use super::objects;
use crate::abi::{self, Config, SlotCfg, ARG_NONE, MAX_ARGS, MAX_SLOTS};
use crate::filter::cbpf::ReadSet;
use crate::filter::{splice, Filter};
use crate::source::Source;
use pktpath_core::sites;

/// Which program type the tracepoint programs are loaded as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum Flavour {
    /// BTF-typed tracepoints (BPF_TRACE_RAW_TP with attach_btf_id).
    #[value(name = "tp_btf")]
    TpBtf,
    /// Raw tracepoints, for kernels where tp_btf is not available.
    #[value(name = "raw_tp")]
    RawTp,
}

impl Flavour {
    pub fn name(self) -> &'static str {
        match self {
            Flavour::TpBtf => "tp_btf",
            Flavour::RawTp => "raw_tp",
        }
    }
    fn object(self) -> &'static [u8] {
        match self {
            Flavour::TpBtf => objects::TP_BTF,
            Flavour::RawTp => objects::RAW_TP,
        }
    }
}

/// How function sites are attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum FuncBackend {
    /// BPF trampolines: one program per function (fexit for returns).
    Fentry,
    /// One program on all functions, the cookie carrying the site id.
    #[value(name = "kprobe-multi")]
    KprobeMulti,
    /// One kprobe per function (kretprobe for returns).
    Kprobe,
}

impl FuncBackend {
    pub fn name(self) -> &'static str {
        match self {
            FuncBackend::Fentry => "fentry",
            FuncBackend::KprobeMulti => "kprobe-multi",
            FuncBackend::Kprobe => "kprobe",
        }
    }
}

/// The function sites of a run and how to attach them.
#[derive(Clone, Debug)]
pub struct Functions {
    pub backend: FuncBackend,
    /// Site id `i` is `sites[i]`.
    pub sites: Vec<FuncSite>,
}

/// Which packets to select, besides the filter expression.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// Network namespace inode, 0 for any.
    pub netns: u32,
    /// Device index (in `netns` when given), 0 for any.
    pub ifindex: u32,
    /// (mark, mask); mask 0 means any mark.
    pub mark: u32,
    pub mark_mask: u32,
    /// Only this site (tracepoint or function name) starts journeys.
    pub start_at: Option<String>,
    /// Attach the tracepoints left out by default (`sites::ADJACENT`).
    pub all_tracepoints: bool,
}

/// The tracepoints one run attaches to.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// Slot `i` serves `slots[i]`.
    pub slots: Vec<Tracepoint>,
    pub fib4: bool,
    pub fib6: bool,
    pub neigh: bool,
    pub sock_ready: bool,
    /// Tracepoints that take a packet but found no free slot.
    pub skipped: Vec<String>,
}

/// Picks the tracepoints: every one that takes a struct sk_buff *, known
/// ones first, then the others by name.
pub fn plan(inv: &Inventory) -> Plan {
    let mut names: Vec<&str> = sites::KNOWN
        .iter()
        .map(|s| s.name)
        .filter(|n| inv.tracepoints.contains_key(*n))
        .collect();
    let known: BTreeSet<&str> = names.iter().copied().collect();
    names.extend(
        inv.tracepoints
            .values()
            .filter(|t| t.skb_arg().is_some() && !known.contains(t.name.as_str()))
            .map(|t| t.name.as_str()),
    );
    let mut p = Plan {
        fib4: inv.tracepoints.contains_key(sites::FIB4.name),
        fib6: inv.tracepoints.contains_key(sites::FIB6.name),
        neigh: inv.tracepoints.contains_key(sites::NEIGH.name),
        sock_ready: inv.tracepoints.contains_key(sites::SOCK_READY.name),
        ..Plan::default()
    };
    for name in names {
        let tp = &inv.tracepoints[name];
        if tp.skb_arg().is_none_or(|i| i >= MAX_ARGS) {
            continue;
        }
        if p.slots.len() < MAX_SLOTS {
            p.slots.push(tp.clone());
        } else {
            p.skipped.push(name.to_string());
        }
    }
    p
}

/// Loaded and attached programs. Dropping it detaches them.
pub struct Tracer {
    /// Of the loaded object, what stays in use once everything is attached
    /// (see `start_one`): the ring and the counters.
    events: MapHandle,
    counters: MapHandle,
    links: Vec<Link>,
    pub flavour: Flavour,
    pub plan: Plan,
    /// Tracepoints that failed to attach, with the reason.
    pub failed: Vec<(String, String)>,
    /// Function sites (by site id) and how they are attached.
    pub functions: Option<Functions>,
    /// Functions that could not be attached, with the reason.
    pub func_failed: Vec<(String, String)>,
    /// Function probes attached.
    pub func_attached: usize,
    /// fentry/fexit copies (file descriptors).
    copies: Vec<fentry::Copies>,
    /// Time from open to everything attached.
    pub attach_time: std::time::Duration,
}

/// libbpf's messages of the current load, shown when it fails.
static LIBBPF_LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn capture_libbpf_log() {
    libbpf_rs::set_print(Some((libbpf_rs::PrintLevel::Warn, |_, msg: String| {
        if let Ok(mut log) = LIBBPF_LOG.lock() {
            log.push(msg.trim_end().to_string());
        }
    })));
}

/// The most telling line of libbpf's log (the verifier's last words).
fn libbpf_reason() -> String {
    let log = LIBBPF_LOG.lock().map(|l| l.clone()).unwrap_or_default();
    if let Ok(p) = std::env::var("PKTPATH_LIBBPF_LOG") {
        std::fs::write(p, log.join("\n")).ok();
    }
    log.iter()
        .rev()
        .find(|l| !l.trim().is_empty() && !l.contains("-- END PROG LOAD LOG --"))
        .cloned()
        .unwrap_or_default()
}

/// What a `Tracer` starts from.
pub struct TracerPlan<'a> {
    pub inv: &'a Inventory,
    pub filter: &'a Filter,
    pub selection: &'a Selection,
    /// tp_btf then raw_tp when None.
    pub flavour: Option<Flavour>,
    pub ring_bytes: u32,
    /// Function sites to attach too.
    pub functions: Option<&'a Functions>,
    /// `progress(done, total)` follows the function attach.
    pub progress: &'a (dyn Fn(usize, usize) + Sync),
}

impl Source for Tracer {
    type Plan<'a> = TracerPlan<'a>;
    type Unavailable = anyhow::Error;

    fn unavailable() -> Option<anyhow::Error> {
        super::caps::require_bpf().err()
    }

    /// Loads with the plan's flavour, or tp_btf then raw_tp; attaches its
    /// functions too when given.
    fn start(plan: TracerPlan<'_>) -> Result<Tracer> {
        Tracer::load(plan)
    }

    /// Detaches everything (as dropping it does).
    fn stop(self) -> Result<()> {
        Ok(())
    }
}

impl Tracer {
    fn load(p: TracerPlan<'_>) -> Result<Tracer> {
        let TracerPlan {
            inv,
            filter,
            selection: sel,
            flavour,
            ring_bytes,
            functions,
            progress,
        } = p;
        super::caps::require_bpf()?;
        capture_libbpf_log();
        let mut plan = plan(inv);
        let start_at = sel.start_at.as_deref();
        plan.slots.retain(|tp| {
            sites::attached(&tp.name, functions.is_some(), start_at, sel.all_tracepoints)
        });
        let flavours = match flavour {
            Some(f) => vec![f],
            None => vec![Flavour::TpBtf, Flavour::RawTp],
        };
        let mut errors = Vec::new();
        for f in flavours {
            match Self::start_one(f, &plan, filter, sel, ring_bytes, functions, progress) {
                Ok(t) => return Ok(t),
                Err(e) => errors.push(format!("{}: {e:#}", f.name())),
            }
        }
        bail!(
            "cannot load the tracepoint programs ({})",
            errors.join("; ")
        )
    }

    fn start_one(
        flavour: Flavour,
        plan: &Plan,
        filter: &Filter,
        sel: &Selection,
        ring_bytes: u32,
        functions: Option<&Functions>,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<Tracer> {
        LIBBPF_LOG.lock().map(|mut l| l.clear()).ok();
        let started = std::time::Instant::now();
        let mut open = ObjectBuilder::default()
            .open_memory(flavour.object())
            .context("cannot open the BPF object")?;
        let mut cfg = Config {
            netns: sel.netns,
            ifindex: sel.ifindex,
            mark: sel.mark & sel.mark_mask,
            mark_mask: sel.mark_mask,
            funcs_active: functions.is_some() as u8,
            filter_bytes: filter.bytes,
            reads: {
                let [l2, l3] = filter.reads.map(|r| r.map(ReadSet::config));
                [l2[0], l2[1], l2[2], l3[0], l3[1], l3[2]]
            },
            ..Config::default()
        };
        for (i, tp) in plan.slots.iter().enumerate() {
            cfg.slots[i] = SlotCfg {
                skb_arg: tp.skb_arg().unwrap_or(0) as u8,
                nargs: tp.params.len().min(MAX_ARGS) as u8,
                qdisc_arg: tp
                    .qdisc_arg()
                    .filter(|&q| q < MAX_ARGS)
                    .map_or(ARG_NONE, |q| q as u8),
                role: abi::role(sites::info(&tp.name).role),
                sock_arg: tp
                    .sock_arg()
                    .filter(|&q| q < MAX_ARGS)
                    .map_or(ARG_NONE, |q| q as u8),
                flags: slot_flags(&tp.name, sel.start_at.as_deref()),
                dev_arg: tp
                    .dev_arg()
                    .filter(|&q| q < MAX_ARGS)
                    .map_or(ARG_NONE, |q| q as u8),
                pad: 0,
            };
        }
        prepare(
            &mut open, flavour, plan, filter, &cfg, ring_bytes, functions,
        )?;
        let obj = open.load().map_err(|e| {
            let why = libbpf_reason();
            anyhow!(
                "{e}{}",
                if why.is_empty() {
                    String::new()
                } else {
                    format!(": {why}")
                }
            )
        })?;
        let map = |name: &str| -> Result<MapHandle> {
            let m = obj
                .maps()
                .find(|m| m.name() == name)
                .ok_or_else(|| anyhow!("{name} map missing"))?;
            Ok(MapHandle::try_from(&m)?)
        };
        let (events, counters) = (map("events")?, map("counters")?);
        let mut t = Tracer {
            events,
            counters,
            links: Vec::new(),
            flavour,
            plan: plan.clone(),
            failed: Vec::new(),
            functions: functions.cloned(),
            func_failed: Vec::new(),
            func_attached: 0,
            copies: Vec::new(),
            attach_time: std::time::Duration::ZERO,
        };
        t.attach(&obj)?;
        if let Some(f) = functions {
            t.attach_functions(&obj, f, sel.start_at.as_deref(), progress)?;
        }
        // The links hold the programs, the programs their maps: libbpf's
        // copy of every program's instructions (~4 MB, kept for reloads
        // we never do) goes with the object.
        drop(obj);
        t.attach_time = started.elapsed();
        Ok(t)
    }

    /// Writes the function sites' config and attaches them.
    fn attach_functions(
        &mut self,
        obj: &Object,
        f: &Functions,
        start_at: Option<&str>,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<()> {
        let map = obj
            .maps()
            .find(|m| m.name() == "func_cfgs")
            .ok_or_else(|| anyhow!("func_cfgs map missing"))?;
        for (id, site) in f.sites.iter().enumerate().take(abi::MAX_FUNCS) {
            let c = abi::FuncCfg {
                skb_arg: site.skb_arg.unwrap_or(ARG_NONE),
                role: abi::role(sites::function_role(&site.name)),
                flags: (site.returns_skb as u8 * abi::FUNC_F_RETURNS_SKB)
                    | (site.skb_ptrptr as u8 * abi::FUNC_F_SKB_PTRPTR)
                    | if sites::function_starts_journey(&site.name)
                        && start_at.is_none_or(|s| s == site.name)
                    {
                        0
                    } else {
                        abi::FUNC_F_NO_START
                    },
                nf_state_arg: site.nf_state_arg.unwrap_or(ARG_NONE),
            };
            map.update(&(id as u32).to_ne_bytes(), c.as_bytes(), MapFlags::ANY)?;
        }
        let max_arg = if f.backend == FuncBackend::Fentry {
            12
        } else {
            6
        };
        let entries: Vec<(u32, &FuncSite)> = f
            .sites
            .iter()
            .enumerate()
            .take(abi::MAX_FUNCS)
            .filter(|(_, s)| s.skb_arg.is_some_and(|a| a < max_arg))
            .map(|(i, s)| (i as u32, s))
            .collect();
        let returns: Vec<(u32, &FuncSite)> = f
            .sites
            .iter()
            .enumerate()
            .take(abi::MAX_FUNCS)
            .filter(|(_, s)| s.returns_skb)
            .map(|(i, s)| (i as u32, s))
            .collect();
        let total = entries.len() + returns.len();
        let done = std::sync::atomic::AtomicUsize::new(0);
        let tick = || {
            progress(
                done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1,
                total,
            )
        };
        match f.backend {
            FuncBackend::Fentry => {
                for (prog, list, exit) in [
                    ("fentry_tpl", &entries, false),
                    ("fexit_tpl", &returns, true),
                ] {
                    if list.is_empty() {
                        continue;
                    }
                    let template = program(obj, prog)?;
                    let funcs = fentry::FuncTypes::of(template.as_fd());
                    let insns = splice::program_insns(&template);
                    let c = fentry::attach_all(&insns, funcs.as_ref(), list, exit, &tick);
                    self.func_attached += c.links.len();
                    self.func_failed.extend(c.failed.iter().cloned());
                    self.copies.push(c);
                }
            }
            FuncBackend::KprobeMulti => {
                for (prog, list, ret) in [
                    ("kprobe_multi", &entries, false),
                    ("kretprobe_multi", &returns, true),
                ] {
                    if list.is_empty() {
                        continue;
                    }
                    let mut links = Vec::new();
                    let mut failed = Vec::new();
                    attach_multi(&program(obj, prog)?, list, ret, &mut links, &mut failed);
                    for _ in 0..list.len() {
                        tick();
                    }
                    self.func_attached += list.len() - failed.len();
                    self.func_failed.extend(failed);
                    self.links.extend(links);
                }
            }
            FuncBackend::Kprobe => {
                for (prog, list, ret) in [
                    ("kprobe_one", &entries, false),
                    ("kretprobe_one", &returns, true),
                ] {
                    if list.is_empty() {
                        continue;
                    }
                    let p = program(obj, prog)?;
                    for (id, site) in list.iter() {
                        let opts = libbpf_rs::KprobeOpts {
                            cookie: *id as u64,
                            ..Default::default()
                        };
                        match p.attach_kprobe_with_opts(ret, &site.name, opts) {
                            Ok(l) => {
                                self.links.push(l);
                                self.func_attached += 1;
                            }
                            Err(e) => self.func_failed.push((site.name.clone(), e.to_string())),
                        }
                        tick();
                    }
                }
            }
        }
        if self.func_attached == 0 {
            bail!(
                "no function could be attached with {}: {}",
                f.backend.name(),
                self.func_failed
                    .first()
                    .map(|(n, e)| format!("{n}: {e}"))
                    .unwrap_or_else(|| "no function sites".into())
            );
        }
        Ok(())
    }

    fn attach(&mut self, obj: &Object) -> Result<()> {
        let mut targets: Vec<(String, String)> = self
            .plan
            .slots
            .iter()
            .enumerate()
            .map(|(i, tp)| (format!("slot_{i}"), tp.name.clone()))
            .collect();
        for (on, prog, tp) in [
            (self.plan.fib4, "fib4", sites::FIB4.name),
            (self.plan.fib6, "fib6", sites::FIB6.name),
            (self.plan.neigh, "neigh_done", sites::NEIGH.name),
            (self.plan.sock_ready, "sock_ready", sites::SOCK_READY.name),
        ] {
            if on {
                targets.push((prog.to_string(), tp.to_string()));
            }
        }
        for (prog_name, tp) in targets {
            let Some(prog) = obj.progs_mut().find(|p| p.name() == prog_name.as_str()) else {
                continue;
            };
            let link = match self.flavour {
                Flavour::TpBtf => prog.attach(),
                Flavour::RawTp => prog.attach_raw_tracepoint(&tp),
            };
            match link {
                Ok(l) => self.links.push(l),
                Err(e) => self.failed.push((tp, e.to_string())),
            }
        }
        if self.links.is_empty() {
            bail!(
                "no tracepoint could be attached: {}",
                self.failed
                    .first()
                    .map(|f| f.1.as_str())
                    .unwrap_or("none found")
            );
        }
        Ok(())
    }

    /// Number of attached tracepoint and function sites.
    pub fn attached(&self) -> usize {
        self.plan.slots.len() + self.func_attached
    }

    /// The ring buffer map events arrive on.
    pub fn events_map(&self) -> &MapHandle {
        &self.events
    }

    /// Kernel-side counters summed over CPUs: [lost, filtered, selected, events].
    pub fn counters(&self) -> Result<[u64; abi::CNT_MAX as usize]> {
        let mut out = [0u64; abi::CNT_MAX as usize];
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = self.counter(i as u32)?;
        }
        Ok(out)
    }

    /// One counter (abi::CNT_*), summed over the CPUs.
    pub fn counter(&self, i: u32) -> Result<u64> {
        let per_cpu = self
            .counters
            .lookup_percpu(&i.to_ne_bytes(), MapFlags::ANY)?
            .unwrap_or_default();
        Ok(per_cpu
            .iter()
            .filter_map(|v| v.get(..8))
            .map(|b| u64::from_ne_bytes(b.try_into().unwrap_or_default()))
            .sum())
    }
}

/// A loaded program of the object, by name.
fn program<'a>(obj: &'a Object, name: &str) -> Result<libbpf_rs::ProgramMut<'a>> {
    obj.progs_mut()
        .find(|p| p.name() == name)
        .ok_or_else(|| anyhow!("{name} not loaded"))
}

/// kprobe-multi on `list`; when the kernel refuses the whole set (one
/// untraceable function is enough), halves are tried until the bad ones are
/// found.
fn attach_multi(
    prog: &libbpf_rs::ProgramMut<'_>,
    list: &[(u32, &FuncSite)],
    ret: bool,
    links: &mut Vec<Link>,
    failed: &mut Vec<(String, String)>,
) {
    if list.is_empty() {
        return;
    }
    let opts = libbpf_rs::KprobeMultiOpts {
        symbols: list.iter().map(|(_, s)| s.name.clone()).collect(),
        cookies: list.iter().map(|(id, _)| *id as u64).collect(),
        retprobe: ret,
        ..Default::default()
    };
    match prog.attach_kprobe_multi_with_opts(opts) {
        Ok(l) => links.push(l),
        Err(e) if list.len() == 1 => failed.push((list[0].1.name.clone(), e.to_string())),
        Err(_) => {
            let (a, b) = list.split_at(list.len() / 2);
            attach_multi(prog, a, ret, links, failed);
            attach_multi(prog, b, ret, links, failed);
        }
    }
}

/// Everything between open and load: slots, targets, filter, config.
fn prepare(
    open: &mut OpenObject,
    flavour: Flavour,
    plan: &Plan,
    filter: &Filter,
    cfg: &Config,
    ring_bytes: u32,
    functions: Option<&Functions>,
) -> Result<()> {
    let returns = functions.is_some_and(|f| f.sites.iter().any(|s| s.returns_skb));
    let backend = functions.map(|f| f.backend);
    let func_progs = [
        ("fentry_tpl", backend == Some(FuncBackend::Fentry)),
        ("fexit_tpl", backend == Some(FuncBackend::Fentry) && returns),
        ("kprobe_multi", backend == Some(FuncBackend::KprobeMulti)),
        (
            "kretprobe_multi",
            backend == Some(FuncBackend::KprobeMulti) && returns,
        ),
        ("kprobe_one", backend == Some(FuncBackend::Kprobe)),
        (
            "kretprobe_one",
            backend == Some(FuncBackend::Kprobe) && returns,
        ),
    ];
    let specials = [
        ("fib4", plan.fib4, sites::FIB4.name),
        ("fib6", plan.fib6, sites::FIB6.name),
        ("neigh_done", plan.neigh, sites::NEIGH.name),
        ("sock_ready", plan.sock_ready, sites::SOCK_READY.name),
    ];
    for mut prog in open.progs_mut() {
        let name = prog.name().to_string_lossy().into_owned();
        let target = if let Some(i) = name.strip_prefix("slot_") {
            let i: usize = i.parse().context("slot program name")?;
            plan.slots.get(i).map(|t| t.name.clone())
        } else {
            specials
                .iter()
                .find(|(p, on, _)| *p == name && *on)
                .map(|(_, _, tp)| tp.to_string())
        };
        if let Some((_, on)) = func_progs.iter().find(|(p, _)| *p == name) {
            prog.set_autoload(*on);
            if *on {
                splice::patch_program(
                    &mut prog,
                    &[
                        (abi::FILTER_MAGIC_L2, &filter.l2),
                        (abi::FILTER_MAGIC_L3, &filter.l3),
                    ],
                )
                .with_context(|| format!("splicing the filter into {name}"))?;
            }
            continue;
        }
        let Some(target) = target else {
            prog.set_autoload(false);
            continue;
        };
        if flavour == Flavour::TpBtf {
            prog.set_attach_target(0, Some(target))
                .with_context(|| format!("setting the target of {name}"))?;
        }
        if name.starts_with("slot_") {
            splice::patch_program(
                &mut prog,
                &[
                    (abi::FILTER_MAGIC_L2, &filter.l2),
                    (abi::FILTER_MAGIC_L3, &filter.l3),
                ],
            )
            .with_context(|| format!("splicing the filter into {name}"))?;
        }
    }
    for mut map in open.maps_mut() {
        let name = map.name().to_string_lossy().into_owned();
        if name == "events" {
            map.set_max_entries(ring_bytes)?;
        } else if name.ends_with(".rodata") {
            let bytes = map
                .initial_value_mut()
                .ok_or_else(|| anyhow!(".rodata has no initial value"))?;
            if bytes.len() != size_of::<Config>() {
                bail!(
                    ".rodata is {} bytes, expected struct config ({}): the object and \
                     src/abi.rs disagree",
                    bytes.len(),
                    size_of::<Config>()
                );
            }
            bytes.copy_from_slice(cfg.as_bytes());
        }
    }
    Ok(())
}

/// A tracepoint slot's `SLOT_F_*` flags: whether packets first seen there
/// start a journey (`--start-at` names the one site that does), and whether
/// it frees packets that were done with rather than dropped.
fn slot_flags(name: &str, start_at: Option<&str>) -> u8 {
    let mut flags = 0;
    if start_at.map_or(!sites::starts_journey(name), |s| s != name) {
        flags |= abi::SLOT_F_NO_START;
    }
    if sites::frees_after_use(name) {
        flags |= abi::SLOT_F_CONSUME;
    }
    flags
}
