//! The compiled BPF objects, embedded at build time (see build.rs).

/// tp_btf flavour: typed tracepoints, BTF-checked context.
pub const TP_BTF: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pktpath_tp_btf.bpf.o"));
/// raw_tp flavour: for kernels where tp_btf cannot load.
pub const RAW_TP: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pktpath_raw_tp.bpf.o"));
/// One empty program per attach type, for `pktpath doctor`.
pub const PROBE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/probe.bpf.o"));
