//! The kernel/user ABI: Rust twins of the structs in bpf/include/pktpath.h.
//!
//! Keep in sync with pktpath.h; `tests::sizes_match_object_btf` compares each
//! size with the BTF of the compiled object, so a drift fails `cargo test`.

pub const MAX_SLOTS: usize = 48;
pub const MAX_ARGS: usize = 6;
pub const FILTER_PKT_MAX: usize = 256;
pub const EVENT_PKT_MAX: usize = 128;
pub const FILTER_MAX_INSNS: usize = 1024;
pub const FILTER_MAGIC_L2: i32 = 0x70c2f11a;
pub const FILTER_MAGIC_L3: i32 = 0x70c3f11a;

/// Byte offsets inside `struct filter_scratch`, used by the filter translator.
pub const SCRATCH_MEM_OFF: i16 = FILTER_PKT_MAX as i16;
pub const SCRATCH_WIRELEN_OFF: i16 = SCRATCH_MEM_OFF + 16 * 4;

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

pub const EVENT_F_FIRST: u8 = 0x1;
pub const EVENT_F_L3: u8 = 0x2;
pub const EVENT_F_CORRELATED: u8 = 0x4;

pub const SLOT_F_NO_START: u8 = 0x1;
pub const SLOT_F_CONSUME: u8 = 0x2;

pub const ROLE_PASS: u8 = 0;
pub const ROLE_FREE: u8 = 1;
pub const ROLE_DELIVER: u8 = 2;

/// A site's role as the BPF side's slot and function tables hold it.
pub fn role(r: pktpath_core::sites::Role) -> u8 {
    use pktpath_core::sites::Role;
    match r {
        Role::Pass => ROLE_PASS,
        Role::Free => ROLE_FREE,
        Role::Deliver => ROLE_DELIVER,
    }
}
/// Tracking state only: freed by a tracepoint, not yet by the allocator.
pub const ROLE_FREED: u8 = 3;

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

impl ReadSetCfg {
    /// The masks of `set` (None: off, the filter reads other bytes too).
    pub fn new(set: Option<crate::filter::cbpf::ReadSet>) -> ReadSetCfg {
        let Some(set) = set else {
            return ReadSetCfg::default();
        };
        let mut c = ReadSetCfg {
            on: 1,
            msh: set.msh,
            ..ReadSetCfg::default()
        };
        for i in 0..64 {
            if set.abs >> i & 1 == 1 {
                c.abs[i / 8] |= 0xff << (8 * (i % 8));
            }
        }
        for i in 0..32 {
            if set.ind >> i & 1 == 1 {
                c.ind[i / 8] |= 0xff << (8 * (i % 8));
            }
        }
        c
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use libbpf_rs::btf::types::Struct;
    use libbpf_rs::btf::Btf;

    fn struct_size(btf: &Btf, name: &str) -> usize {
        let s: Struct = btf.type_by_name(name).expect(name);
        use libbpf_rs::btf::HasSize;
        s.size()
    }

    #[test]
    fn sizes_match_object_btf() {
        let btf = Btf::from_raw("pktpath", crate::kernel::objects::TP_BTF)
            .unwrap()
            .expect("object has BTF");
        assert_eq!(struct_size(&btf, "event"), size_of::<RawEvent>());
        assert_eq!(struct_size(&btf, "config"), size_of::<Config>());
        assert_eq!(struct_size(&btf, "slot_cfg"), size_of::<SlotCfg>());
        assert_eq!(struct_size(&btf, "read_set"), size_of::<ReadSetCfg>());
        assert_eq!(struct_size(&btf, "func_cfg"), size_of::<FuncCfg>());
        assert_eq!(
            struct_size(&btf, "filter_scratch"),
            SCRATCH_WIRELEN_OFF as usize + 8
        );
    }
}
