//! The kernel/user ABI: Rust twins of the structs and constants of
//! bpf/include/pktpath.h.
//!
//! The header is the one source of truth, and this file follows it. Its
//! constants are C enumerators, so the compiled object's BTF holds them along
//! with the structs, and the tests below read that BTF: every member of every
//! twin struct (name, order, byte offset, size; no padding left implicit) and
//! every constant here must match, and every member and enumerator there must
//! have its twin here. A drift either way fails `cargo test`. The rest of the
//! crate uses the constants here, never its own copy of a value.

pub const MAX_SLOTS: usize = 48;
pub const MAX_ARGS: usize = 6;
/// An argument index meaning "none" (SlotCfg, FuncCfg).
pub const ARG_NONE: u8 = 0xff;
pub const FILTER_PKT_MAX: usize = 256;
pub const EVENT_PKT_MAX: usize = 128;
pub const FILTER_MAX_INSNS: usize = 1024;
pub const FILTER_MAGIC_L2: i32 = 0x70c2f11a;
pub const FILTER_MAGIC_L3: i32 = 0x70c3f11a;

/// `struct filter_scratch`: per-CPU scratch the filter reads (the packet,
/// cBPF memory, wire length). Only its offsets are used here.
#[repr(C)]
pub struct FilterScratch {
    pub pkt: [u8; FILTER_PKT_MAX],
    pub mem: [u32; 16],
    pub wirelen: u32,
    pub pad: u32,
}

/// Byte offsets inside `struct filter_scratch`, used by the filter translator.
pub const SCRATCH_MEM_OFF: i16 = std::mem::offset_of!(FilterScratch, mem) as i16;
pub const SCRATCH_WIRELEN_OFF: i16 = std::mem::offset_of!(FilterScratch, wirelen) as i16;

pub const EVENT_SKB: u16 = 1;
pub const EVENT_FIB4: u16 = 2;
pub const EVENT_FIB6: u16 = 3;
pub const EVENT_NEIGH: u16 = 4;
pub const EVENT_FUNC: u16 = 5;
pub const EVENT_FUNC_RET: u16 = 6;
pub const EVENT_SOCK: u16 = 7;

pub const MAX_FUNCS: usize = 16384;
pub const SITE_MAGIC: i32 = 0x51735173;
pub const FUNC_F_RETURNS_SKB: u8 = 0x1;
pub const FUNC_F_NO_START: u8 = 0x2;
pub const FUNC_F_SKB_PTRPTR: u8 = 0x4;

/// `struct func_cfg`: one function site (func_cfgs map value).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FuncCfg {
    pub skb_arg: u8,
    pub role: u8,
    pub flags: u8,
    pub nf_state_arg: u8,
}

impl FuncCfg {
    /// The bytes of the func_cfgs map value.
    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: FuncCfg is repr(C), made only of u8, so every byte is
        // initialized.
        unsafe { std::slice::from_raw_parts(self as *const Self as *const u8, size_of::<Self>()) }
    }
}

pub const EVENT_F_FIRST: u8 = 0x1;
pub const EVENT_F_L3: u8 = 0x2;
pub const EVENT_F_CORRELATED: u8 = 0x4;

pub const SLOT_F_NO_START: u8 = 0x1;
pub const SLOT_F_CONSUME: u8 = 0x2;

pub const ROLE_PASS: u8 = 0;
pub const ROLE_FREE: u8 = 1;
pub const ROLE_DELIVER: u8 = 2;
/// Tracking state only: freed by a tracepoint, not yet by the allocator.
pub const ROLE_FREED: u8 = 3;

/// A site's role as the BPF side's slot and function tables hold it.
pub fn role(r: pktpath_core::sites::Role) -> u8 {
    use pktpath_core::sites::Role;
    match r {
        Role::Pass => ROLE_PASS,
        Role::Free => ROLE_FREE,
        Role::Deliver => ROLE_DELIVER,
    }
}

pub const CNT_LOST: u32 = 0;
pub const CNT_FILTERED: u32 = 1;
pub const CNT_SELECTED: u32 = 2;
pub const CNT_EVENTS: u32 = 3;
pub const CNT_MAX: u32 = 4;

/// `struct slot_cfg`: how to read one tracepoint's arguments.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SlotCfg {
    pub skb_arg: u8,
    pub nargs: u8,
    pub qdisc_arg: u8,
    pub role: u8,
    pub sock_arg: u8,
    pub flags: u8,
    pub dev_arg: u8,
    pub pad: u8,
}

/// `struct read_set`: the bytes a filter reads, as byte masks.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ReadSetCfg {
    pub abs: [u64; 8],
    pub ind: [u64; 4],
    pub on: u8,
    pub msh: u8,
    pub pad: [u8; 6],
}

/// `struct config`: the read-only config, written between open and load.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Config {
    pub stale_ns: u64,
    pub netns: u32,
    pub ifindex: u32,
    pub mark: u32,
    pub mark_mask: u32,
    pub fib_correlate: u8,
    pub funcs_active: u8,
    /// Bytes of the packet the filter reads (see Filter::bytes).
    pub filter_bytes: u16,
    pub pad: [u8; 4],
    /// The filter's read sets for Ethernet, then IP: IPv4, IPv6, other.
    pub reads: [ReadSetCfg; 6],
    pub slots: [SlotCfg; MAX_SLOTS],
}

impl Default for Config {
    fn default() -> Self {
        Config {
            // Longer than a packet waits in a neighbour's queue (3 s with
            // the default probes; a fresh IPv6 link took 2.03 s, and the
            // journey was cut in two at 2 s).
            stale_ns: 4_000_000_000,
            netns: 0,
            ifindex: 0,
            mark: 0,
            mark_mask: 0,
            fib_correlate: 1,
            funcs_active: 0,
            filter_bytes: FILTER_PKT_MAX as u16,
            pad: [0; 4],
            reads: [ReadSetCfg::default(); 6],
            slots: [SlotCfg::default(); MAX_SLOTS],
        }
    }
}

impl Config {
    /// The bytes as the BPF object's .rodata holds them.
    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: Config is repr(C), made only of integers, with explicit
        // padding fields, so every byte is initialized.
        unsafe { std::slice::from_raw_parts(self as *const Self as *const u8, size_of::<Self>()) }
    }
}

/// `struct event`: one record of the ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RawEvent {
    pub ts: u64,
    pub skb: u64,
    pub journey: u64,
    pub args: [u64; MAX_ARGS],
    pub netns: u32,
    pub ifindex: u32,
    pub len: u32,
    pub mark: u32,
    pub qdisc_handle: u32,
    pub site: u16,
    pub kind: u16,
    pub cpu: u16,
    pub protocol: u16,
    pub data_len: u16,
    pub flags: u8,
    pub pad: u8,
    pub ct_status: u32,
    pub ct_zone: u16,
    pub ct_info: u8,
    pub pad2: u8,
    pub vlan_tci: u16,
    pub vlan_proto: u16,
    pub ct_orig: [u8; 40],
    pub ct_reply: [u8; 40],
    pub dev: [u8; 16],
    pub qdisc_kind: [u8; 16],
    pub data: [u8; EVENT_PKT_MAX],
    pub pad3: u32,
}

impl RawEvent {
    /// Decodes a ring buffer record; None when it is too short.
    pub fn from_bytes(buf: &[u8]) -> Option<RawEvent> {
        if buf.len() < size_of::<RawEvent>() {
            return None;
        }
        // SAFETY: the length is checked above, RawEvent is plain old data
        // (any bit pattern is valid) and read_unaligned has no alignment need.
        Some(unsafe { std::ptr::read_unaligned(buf.as_ptr() as *const RawEvent) })
    }

    /// The record's bytes, for tests and replay.
    pub fn to_bytes(&self) -> Vec<u8> {
        // SAFETY: RawEvent is repr(C) plain old data with explicit padding.
        unsafe { std::slice::from_raw_parts(self as *const Self as *const u8, size_of::<Self>()) }
            .to_vec()
    }

    pub fn zeroed() -> RawEvent {
        // SAFETY: all-zero is a valid RawEvent (integers and arrays only).
        unsafe { std::mem::zeroed() }
    }
}

/// The C string in a fixed array, up to its first NUL.
pub fn cstr(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// The twins of pktpath.h checked against the object's BTF, member by member
/// and constant by constant (see the top of this file).
#[cfg(test)]
mod tests {
    use super::*;
    use libbpf_rs::btf::types::{Array, Composite, Enum, Func, Int, MemberAttr, Struct};
    use libbpf_rs::btf::{Btf, BtfType, HasSize};
    use std::collections::BTreeMap;
    use std::mem::offset_of;

    /// A Rust struct field: its name (the C member's), byte offset and size.
    struct Field {
        name: &'static str,
        offset: usize,
        size: usize,
    }

    /// A twin struct: the C struct's name, the Rust size, and the fields in
    /// the order of the C members.
    struct Twin {
        c_name: &'static str,
        size: usize,
        fields: Vec<Field>,
    }

    /// The size of the field that `_f` projects to.
    fn field_size<S, F>(_f: fn(&S) -> &F) -> usize {
        size_of::<F>()
    }

    /// `twin!(RustType, "c_name", [field, ...])`, fields in C order.
    macro_rules! twin {
        ($ty:ty, $c_name:literal, [$($field:ident),* $(,)?]) => {
            Twin {
                c_name: $c_name,
                size: size_of::<$ty>(),
                fields: vec![$(Field {
                    name: stringify!($field),
                    offset: offset_of!($ty, $field),
                    size: field_size(|s: &$ty| &s.$field),
                }),*],
            }
        };
    }

    /// One table per struct of pktpath.h.
    fn twins() -> Vec<Twin> {
        vec![
            twin!(FuncCfg, "func_cfg", [skb_arg, role, flags, nf_state_arg]),
            twin!(
                SlotCfg,
                "slot_cfg",
                [skb_arg, nargs, qdisc_arg, role, sock_arg, flags, dev_arg, pad]
            ),
            twin!(ReadSetCfg, "read_set", [abs, ind, on, msh, pad]),
            twin!(
                Config,
                "config",
                [
                    stale_ns,
                    netns,
                    ifindex,
                    mark,
                    mark_mask,
                    fib_correlate,
                    funcs_active,
                    filter_bytes,
                    pad,
                    reads,
                    slots,
                ]
            ),
            twin!(
                RawEvent,
                "event",
                [
                    ts,
                    skb,
                    journey,
                    args,
                    netns,
                    ifindex,
                    len,
                    mark,
                    qdisc_handle,
                    site,
                    kind,
                    cpu,
                    protocol,
                    data_len,
                    flags,
                    pad,
                    ct_status,
                    ct_zone,
                    ct_info,
                    pad2,
                    vlan_tci,
                    vlan_proto,
                    ct_orig,
                    ct_reply,
                    dev,
                    qdisc_kind,
                    data,
                    pad3,
                ]
            ),
            twin!(FilterScratch, "filter_scratch", [pkt, mem, wirelen, pad]),
        ]
    }

    /// `consts![NAME, ...]`: each constant's name and value.
    macro_rules! consts {
        ($($name:ident),* $(,)?) => {
            [$((stringify!($name), $name as i64)),*]
        };
    }

    /// Every constant of pktpath.h, by enum.
    const CONSTANTS: &[(&str, i64)] = &consts![
        // enum limits
        MAX_SLOTS,
        MAX_ARGS,
        ARG_NONE,
        FILTER_PKT_MAX,
        EVENT_PKT_MAX,
        FILTER_MAX_INSNS,
        MAX_FUNCS,
        // enum placeholder
        FILTER_MAGIC_L2,
        FILTER_MAGIC_L3,
        SITE_MAGIC,
        // enum event_kind
        EVENT_SKB,
        EVENT_FIB4,
        EVENT_FIB6,
        EVENT_NEIGH,
        EVENT_FUNC,
        EVENT_FUNC_RET,
        EVENT_SOCK,
        // enum func_flags
        FUNC_F_RETURNS_SKB,
        FUNC_F_NO_START,
        FUNC_F_SKB_PTRPTR,
        // enum event_flags
        EVENT_F_FIRST,
        EVENT_F_L3,
        EVENT_F_CORRELATED,
        // enum slot_role
        ROLE_PASS,
        ROLE_FREE,
        ROLE_DELIVER,
        ROLE_FREED,
        // enum slot_flags
        SLOT_F_NO_START,
        SLOT_F_CONSUME,
        // enum counter
        CNT_LOST,
        CNT_FILTERED,
        CNT_SELECTED,
        CNT_EVENTS,
        CNT_MAX,
    ];

    /// Both flavours of the object, with their BTF.
    fn objects() -> [(&'static str, Btf<'static>); 2] {
        let btf = |name, obj| {
            let btf = Btf::from_raw(name, obj).unwrap().expect("object has BTF");
            (name, btf)
        };
        [
            btf("tp_btf", crate::kernel::objects::TP_BTF),
            btf("raw_tp", crate::kernel::objects::RAW_TP),
        ]
    }

    /// The size of a type, as C's sizeof.
    fn size_of_type(t: BtfType<'_>) -> usize {
        let t = t.skip_mods_and_typedefs();
        if let Ok(a) = Array::try_from(t) {
            a.capacity() * size_of_type(a.contained_type())
        } else if let Ok(i) = Int::try_from(t) {
            i.size()
        } else if let Ok(c) = Composite::try_from(t) {
            c.size()
        } else if let Ok(e) = Enum::try_from(t) {
            e.size()
        } else {
            panic!("no size for {t:?}")
        }
    }

    /// The struct `name` (by kind: a variable may have the same name).
    fn struct_named<'b>(btf: &'b Btf<'_>, name: &str) -> Option<Struct<'b>> {
        btf.type_by_kind::<Struct>()
            .find(|s| s.name().and_then(|n| n.to_str()) == Some(name))
    }

    /// Each member of a twin struct: same name, order, offset and size in C
    /// and Rust, none left out, and no padding that is not a member.
    fn check_struct(btf: &Btf, twin: &Twin) -> Vec<String> {
        let name = twin.c_name;
        let Some(s) = struct_named(btf, name) else {
            return vec![format!("struct {name}: not in the object's BTF")];
        };
        let mut errors = Vec::new();
        if s.size() != twin.size {
            errors.push(format!(
                "struct {name}: {} bytes in C, {} in Rust",
                s.size(),
                twin.size
            ));
        }
        let c_members: Vec<_> = s.iter().collect();
        for i in 0..c_members.len().max(twin.fields.len()) {
            let (c, r) = match (c_members.get(i), twin.fields.get(i)) {
                (Some(c), Some(r)) => (c, r),
                (Some(c), None) => {
                    let c_name = c.name.and_then(|n| n.to_str()).unwrap_or("");
                    errors.push(format!(
                        "{name}.{c_name}: member {i} in C, not in the table"
                    ));
                    continue;
                }
                (None, Some(r)) => {
                    errors.push(format!(
                        "{name}.{}: in the table, C has {i} members",
                        r.name
                    ));
                    continue;
                }
                (None, None) => unreachable!(),
            };
            let c_name = c.name.and_then(|n| n.to_str()).unwrap_or("");
            if c_name != r.name {
                errors.push(format!(
                    "{name}: member {i} is `{c_name}` in C, `{}` in the table",
                    r.name
                ));
                continue;
            }
            let MemberAttr::Normal { offset: bits } = c.attr else {
                errors.push(format!("{name}.{c_name}: a bit-field in C"));
                continue;
            };
            let c_size = size_of_type(btf.type_by_id(c.ty).expect("member type"));
            if (bits / 8) as usize != r.offset || bits % 8 != 0 {
                errors.push(format!(
                    "{name}.{c_name}: at offset {} in C, {} in Rust",
                    bits as f64 / 8.0,
                    r.offset
                ));
            }
            if c_size != r.size {
                errors.push(format!(
                    "{name}.{c_name}: {c_size} bytes in C, {} in Rust",
                    r.size
                ));
            }
        }
        let covered: usize = twin.fields.iter().map(|f| f.size).sum();
        if covered != twin.size {
            errors.push(format!(
                "struct {name}: its members are {covered} of its {} bytes: make the padding a member",
                twin.size
            ));
        }
        errors
    }

    #[test]
    fn structs_match_object_btf() {
        let mut errors = Vec::new();
        for (flavour, btf) in objects() {
            for twin in twins() {
                errors.extend(
                    check_struct(&btf, &twin)
                        .into_iter()
                        .map(|e| format!("{flavour}: {e}")),
                );
            }
        }
        assert!(
            errors.is_empty(),
            "pktpath.h and abi.rs differ:\n{}",
            errors.join("\n")
        );
    }

    /// The enumerators of the enums that struct pktpath_abi lists: the
    /// constants of pktpath.h, name to (enum, value).
    fn header_constants(btf: &Btf) -> BTreeMap<String, (String, i64)> {
        let abi = struct_named(btf, "pktpath_abi").expect("struct pktpath_abi in BTF");
        let mut constants = BTreeMap::new();
        for m in abi.iter() {
            let t: BtfType = btf.type_by_id(m.ty).expect("member type");
            let e = Enum::try_from(t)
                .unwrap_or_else(|_| panic!("pktpath_abi.{:?}: not an enum", m.name));
            let enum_name = e
                .name()
                .and_then(|n| n.to_str())
                .unwrap_or("(anonymous)")
                .to_string();
            for v in e.iter() {
                let name = v.name.and_then(|n| n.to_str()).expect("enumerator name");
                constants.insert(name.to_string(), (enum_name.clone(), v.value));
            }
        }
        constants
    }

    #[test]
    fn constants_match_object_btf() {
        let mut errors = Vec::new();
        for (flavour, btf) in objects() {
            let mut header = header_constants(&btf);
            for &(name, value) in CONSTANTS {
                match header.remove(name) {
                    None => errors.push(format!(
                        "{flavour}: {name}: not an enumerator of an enum in struct pktpath_abi"
                    )),
                    Some((e, c)) if c != value => errors.push(format!(
                        "{flavour}: {name}: {c} ({c:#x}) in pktpath.h (enum {e}), {value} ({value:#x}) in abi.rs"
                    )),
                    Some(_) => {}
                }
            }
            for (name, (e, _)) in header {
                errors.push(format!(
                    "{flavour}: {name} (enum {e}): not in abi.rs's CONSTANTS"
                ));
            }
        }
        assert!(
            errors.is_empty(),
            "pktpath.h and abi.rs differ:\n{}",
            errors.join("\n")
        );
    }

    /// The programs slot_0 to slot_<MAX_SLOTS - 1>, no more, no fewer.
    #[test]
    fn slot_programs_match_max_slots() {
        for (flavour, btf) in objects() {
            let mut slots: Vec<usize> = btf
                .type_by_kind::<Func>()
                .filter_map(|f| f.name()?.to_str()?.strip_prefix("slot_")?.parse().ok())
                .collect();
            slots.sort();
            assert_eq!(
                slots,
                (0..MAX_SLOTS).collect::<Vec<_>>(),
                "{flavour}: slot programs"
            );
        }
    }
}
