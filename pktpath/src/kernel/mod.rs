//! Everything that touches the kernel: capability checks, the BTF inventory,
//! the embedded BPF objects and the attach backends.

pub mod btf;
pub mod caps;
pub mod doctor;
pub mod fentry;
pub mod functions;
pub mod objects;
pub mod tracepoint;
