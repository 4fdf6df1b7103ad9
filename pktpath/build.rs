//! Compiles bpf/pktpath.bpf.c twice with clang (libbpf-cargo): once with
//! tp_btf sections, once with raw_tp sections for kernels without tp_btf.
//! Also compiles bpf/probe.bpf.c, the attach-type probes of `pktpath doctor`.
//! The objects are embedded into the binary by src/kernel/objects.rs.

use std::env;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

const SRC: &str = "bpf/pktpath.bpf.c";

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));
    for (name, extra) in [("tp_btf", None), ("raw_tp", Some("-DPKTPATH_RAW_TP"))] {
        let mut args = vec!["-Ibpf/include".to_string(), "-Wall".to_string()];
        args.extend(extra.map(str::to_string));
        SkeletonBuilder::new()
            .source(SRC)
            .obj(out.join(format!("pktpath_{name}.bpf.o")))
            .clang_args(args)
            .build()
            .unwrap_or_else(|e| panic!("compiling {SRC} ({name}) failed: {e:#}"));
    }
    SkeletonBuilder::new()
        .source("bpf/probe.bpf.c")
        .obj(out.join("probe.bpf.o"))
        .clang_args(["-Ibpf/include", "-Wall"])
        .build()
        .unwrap_or_else(|e| panic!("compiling bpf/probe.bpf.c failed: {e:#}"));
    println!("cargo:rerun-if-changed=bpf");
}
