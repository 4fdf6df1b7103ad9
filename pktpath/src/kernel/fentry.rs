//! fentry/fexit (BPF trampolines) on many functions: one program per target.
//!
//! The kernel ties each tracing program to one function at load time. We
//! load the object once with a template program, take its final
//! instructions (relocated, maps embedded), and load one copy per function
//! with the site id patched in and the filter padding removed, on two
//! threads. Copies and links are file descriptors owned here.
//!
//! The shared code of the template is in BPF global functions. The kernel
//! verifies a global function once, on its own, but only knows which
//! functions are global from the program's BTF function records: each copy
//! is loaded with the template's records (types from the kernel, offsets
//! from the copy's own calls), which is what keeps one verification at a
//! few thousand instructions instead of ~70,000.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use libbpf_rs::libbpf_sys;

use super::functions::FuncSite;
use crate::filter::ebpf::Insn;

const BPF_PROG_TYPE_TRACING: u32 = 26;
const BPF_TRACE_FENTRY: u32 = 24;
const BPF_TRACE_FEXIT: u32 = 25;
const BTF_KIND_FUNC: u32 = 12;

/// Where a function's BTF lives: vmlinux (fd None) or a module's BTF object.
#[derive(Default)]
struct BtfIds {
    vmlinux: Option<*mut libbpf_sys::btf>,
    modules: HashMap<String, Option<(OwnedFd, *mut libbpf_sys::btf)>>,
}

// SAFETY: the btf pointers are only used under the Mutex that holds BtfIds.
unsafe impl Send for BtfIds {}

impl BtfIds {
    fn vmlinux(&mut self) -> Option<*mut libbpf_sys::btf> {
        if self.vmlinux.is_none() {
            // SAFETY: plain libbpf call; NULL (error) is checked.
            let b = unsafe { libbpf_sys::btf__load_vmlinux_btf() };
            if b.is_null() {
                return None;
            }
            self.vmlinux = Some(b);
        }
        self.vmlinux
    }

    /// (attach_btf_obj_fd, attach_btf_id) of function `f`.
    fn target(&mut self, f: &FuncSite) -> Option<(i32, u32)> {
        let name = CString::new(f.name.as_str()).ok()?;
        let vmlinux = self.vmlinux()?;
        let Some(module) = &f.module else {
            // SAFETY: valid BTF and NUL-terminated name.
            let id = unsafe {
                libbpf_sys::btf__find_by_name_kind(vmlinux, name.as_ptr(), BTF_KIND_FUNC)
            };
            return (id > 0).then_some((0, id as u32));
        };
        let entry = self
            .modules
            .entry(module.clone())
            .or_insert_with(|| module_btf(module, vmlinux));
        let (fd, btf) = entry.as_ref()?;
        // SAFETY: valid BTF and NUL-terminated name.
        let id = unsafe { libbpf_sys::btf__find_by_name_kind(*btf, name.as_ptr(), BTF_KIND_FUNC) };
        (id > 0).then_some((fd.as_raw_fd(), id as u32))
    }
}

/// The BTF object of module `name`: an fd for attach_btf_obj_fd, and its
/// parsed types.
fn module_btf(
    name: &str,
    vmlinux: *mut libbpf_sys::btf,
) -> Option<(OwnedFd, *mut libbpf_sys::btf)> {
    let cname = CString::new(name).ok()?;
    let mut id = 0u32;
    loop {
        let mut next = 0u32;
        // SAFETY: plain syscall wrappers with valid out pointers.
        if unsafe { libbpf_sys::bpf_btf_get_next_id(id, &mut next) } != 0 {
            return None;
        }
        id = next;
        let fd = unsafe { libbpf_sys::bpf_btf_get_fd_by_id(id) };
        if fd < 0 {
            continue;
        }
        // SAFETY: fd was just returned to us.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut buf = [0u8; 64];
        let mut info: libbpf_sys::bpf_btf_info = unsafe { std::mem::zeroed() };
        info.name = buf.as_mut_ptr() as u64;
        info.name_len = buf.len() as u32;
        let mut len = size_of::<libbpf_sys::bpf_btf_info>() as u32;
        if unsafe { libbpf_sys::bpf_btf_get_info_by_fd(fd, &mut info, &mut len) } != 0 {
            continue;
        }
        let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
        if &buf[..end] == name.as_bytes() {
            // SAFETY: valid name and base BTF.
            let btf = unsafe { libbpf_sys::btf__load_module_btf(cname.as_ptr(), vmlinux) };
            return (!btf.is_null()).then_some((owned, btf));
        }
    }
}

/// The template's BTF and the types of its functions (main program first,
/// then each BPF function, in the order they are laid out).
pub struct FuncTypes {
    btf: OwnedFd,
    types: Vec<u32>,
}

impl FuncTypes {
    /// Read from the loaded template; None when it has no function records.
    pub fn of(prog: BorrowedFd<'_>) -> Option<FuncTypes> {
        let get = |info: &mut libbpf_sys::bpf_prog_info| {
            let mut len = size_of::<libbpf_sys::bpf_prog_info>() as u32;
            // SAFETY: info is a valid bpf_prog_info; any buffer it points
            // to was sized by the fields that say how many records fit.
            unsafe { libbpf_sys::bpf_prog_get_info_by_fd(prog.as_raw_fd(), info, &mut len) == 0 }
        };
        // SAFETY: all-zero is a valid bpf_prog_info (asks for no arrays).
        let mut info: libbpf_sys::bpf_prog_info = unsafe { std::mem::zeroed() };
        if !get(&mut info) || info.nr_func_info == 0 || info.btf_id == 0 {
            return None;
        }
        let n = info.nr_func_info;
        let mut recs = vec![
            libbpf_sys::bpf_func_info {
                insn_off: 0,
                type_id: 0
            };
            n as usize
        ];
        // SAFETY: as above.
        let mut info: libbpf_sys::bpf_prog_info = unsafe { std::mem::zeroed() };
        info.nr_func_info = n;
        info.func_info_rec_size = size_of::<libbpf_sys::bpf_func_info>() as u32;
        info.func_info = recs.as_mut_ptr() as u64;
        if !get(&mut info) {
            return None;
        }
        // SAFETY: plain syscall wrapper; a negative result is checked.
        let fd = unsafe { libbpf_sys::bpf_btf_get_fd_by_id(info.btf_id) };
        if fd < 0 {
            return None;
        }
        Some(FuncTypes {
            // SAFETY: fd was just returned to us.
            btf: unsafe { OwnedFd::from_raw_fd(fd) },
            types: recs.iter().map(|r| r.type_id).collect(),
        })
    }

    /// The function records of `insns` (a copy of the template), or None
    /// when its functions do not match the template's.
    fn records(&self, insns: &[Insn]) -> Option<Vec<libbpf_sys::bpf_func_info>> {
        let starts = crate::filter::splice::subprog_starts(insns);
        (starts.len() == self.types.len()).then(|| {
            starts
                .iter()
                .zip(&self.types)
                .map(|(&insn_off, &type_id)| libbpf_sys::bpf_func_info { insn_off, type_id })
                .collect()
        })
    }
}

/// Loaded copies and their links.
#[derive(Default)]
pub struct Copies {
    pub progs: Vec<OwnedFd>,
    pub links: Vec<OwnedFd>,
    /// (function, reason) for the ones that could not be attached.
    pub failed: Vec<(String, String)>,
}

/// One copy of `template` for each `(site id, function)`, as fentry (or
/// fexit when `exit`), attached. `progress` is called after each.
pub fn attach_all(
    template: &[Insn],
    funcs: Option<&FuncTypes>,
    sites: &[(u32, &FuncSite)],
    exit: bool,
    progress: &(dyn Fn() + Sync),
) -> Copies {
    let base = crate::filter::splice::strip_padding(template);
    // Without them the copy still loads, its functions verified inline.
    let records = funcs.and_then(|f| Some((f.btf.as_raw_fd(), f.records(&base)?)));
    let ids = Mutex::new(BtfIds::default());
    let out = Mutex::new(Copies::default());
    let next = AtomicUsize::new(0);
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((site, f)) = sites.get(i) else { break };
                let target = ids.lock().unwrap().target(f);
                let r = match target {
                    Some((obj_fd, btf_id)) => {
                        load_one(&base, records.as_ref(), *site, obj_fd, btf_id, exit)
                    }
                    None => Err("no BTF id for this function".to_string()),
                };
                let mut o = out.lock().unwrap();
                match r {
                    Ok((p, l)) => {
                        o.progs.push(p);
                        o.links.push(l);
                    }
                    Err(e) => o.failed.push((f.name.clone(), e)),
                }
                drop(o);
                progress();
            });
        }
    });
    out.into_inner().unwrap()
}

fn load_one(
    base: &[Insn],
    records: Option<&(i32, Vec<libbpf_sys::bpf_func_info>)>,
    site: u32,
    obj_fd: i32,
    btf_id: u32,
    exit: bool,
) -> Result<(OwnedFd, OwnedFd), String> {
    let mut insns = base.to_vec();
    if crate::filter::splice::set_site(&mut insns, crate::abi::SITE_MAGIC, site) == 0 {
        return Err("template has no site id placeholder".into());
    }
    let attach_type = if exit {
        BPF_TRACE_FEXIT
    } else {
        BPF_TRACE_FENTRY
    };
    // SAFETY: zeroed opts is valid; sz tells libbpf which fields we set.
    let mut opts: libbpf_sys::bpf_prog_load_opts = unsafe { std::mem::zeroed() };
    opts.sz = size_of::<libbpf_sys::bpf_prog_load_opts>() as _;
    opts.expected_attach_type = attach_type;
    opts.attach_btf_id = btf_id;
    opts.attach_btf_obj_fd = obj_fd as _;
    if let Some((btf_fd, recs)) = records {
        opts.prog_btf_fd = *btf_fd as _;
        opts.func_info = recs.as_ptr() as *const _;
        opts.func_info_cnt = recs.len() as _;
        opts.func_info_rec_size = size_of::<libbpf_sys::bpf_func_info>() as _;
    }
    let name = CString::new(if exit { "pp_fexit" } else { "pp_fentry" }).unwrap();
    let license = CString::new("GPL").unwrap();
    // SAFETY: instructions are a valid bpf_insn array (same layout); libbpf
    // copies them into the syscall.
    let fd = unsafe {
        libbpf_sys::bpf_prog_load(
            BPF_PROG_TYPE_TRACING,
            name.as_ptr(),
            license.as_ptr(),
            insns.as_ptr() as *const libbpf_sys::bpf_insn,
            insns.len() as _,
            &mut opts,
        )
    };
    if fd < 0 {
        return Err(format!("load: {}", std::io::Error::from_raw_os_error(-fd)));
    }
    // SAFETY: fd is ours.
    let prog = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: valid prog fd; NULL opts.
    let link = unsafe { libbpf_sys::bpf_link_create(fd, 0, attach_type, std::ptr::null()) };
    if link < 0 {
        return Err(format!(
            "attach: {}",
            std::io::Error::from_raw_os_error(-link)
        ));
    }
    // SAFETY: link is ours.
    Ok((prog, unsafe { OwnedFd::from_raw_fd(link) }))
}
