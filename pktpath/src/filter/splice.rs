//! Writing a translated filter into a BPF program's placeholder, before load.
//!
//! The placeholder (bpf/include/filter.h) is `call MAGIC` followed by
//! FILTER_MAX_INSNS - 1 `goto +0`. We overwrite that block in place: the
//! filter first, then the `goto +0` no-ops it leaves, so the program keeps its
//! length and no relocation, func_info or line_info has to move. The filter
//! reads/writes only r0-r5 and the scratch map value in r1.
//!
//! After the filter comes `r1 = 0; if r1 == 0 goto <end of block>`: a branch
//! the verifier knows is always taken, so it never visits the no-ops and
//! removes them as one piece of dead code. (Falling through them, it walked
//! every one and removed them one at a time, moving the rest of the program
//! each time: ~2,000 moves per program, a second per program under
//! emulation.) The kernel rejects unreachable code, hence a conditional
//! branch rather than a plain jump.

use super::ebpf::{Insn, JA, JMP};
use crate::abi::FILTER_MAX_INSNS;
use libbpf_rs::libbpf_sys;
use libbpf_rs::AsRawLibbpf;
use thiserror::Error;

const CALL: u8 = JMP | super::ebpf::CALL;

#[derive(Debug, Error)]
pub enum SpliceError {
    #[error("placeholder {0:#x} is not followed by {1} no-ops")]
    BadPlaceholder(i32, usize),
    #[error("filter of {0} instructions does not fit in {1}")]
    TooLarge(usize, usize),
    #[error("libbpf refused the new instructions: {0}")]
    Libbpf(std::io::Error),
}

/// Instructions a filter may have: the placeholder less the branch over
/// the padding.
pub const FILTER_ROOM: usize = FILTER_MAX_INSNS - 2;

/// Replaces every placeholder `call magic` block in `insns` with `filter`.
/// Returns how many placeholders were patched.
pub fn patch(insns: &mut [Insn], magic: i32, filter: &[Insn]) -> Result<usize, SpliceError> {
    if filter.len() > FILTER_ROOM {
        return Err(SpliceError::TooLarge(filter.len(), FILTER_ROOM));
    }
    let n = filter.len();
    let skip = [
        Insn::new(
            super::ebpf::ALU64 | super::ebpf::MOV | super::ebpf::K,
            1,
            0,
            0,
            0,
        ),
        Insn::new(
            JMP | super::ebpf::JEQ | super::ebpf::K,
            1,
            0,
            (FILTER_MAX_INSNS - n - 2) as i16,
            0,
        ),
    ];
    let nop = Insn::new(JMP | JA, 0, 0, 0, 0);
    let mut patched = 0;
    let mut i = 0;
    while i < insns.len() {
        let ins = insns[i];
        if ins.code == CALL && ins.src() == 0 && ins.imm == magic {
            let block = insns
                .get_mut(i..i + FILTER_MAX_INSNS)
                .filter(|b| b[1..].iter().all(|x| *x == nop))
                .ok_or(SpliceError::BadPlaceholder(magic, FILTER_MAX_INSNS - 1))?;
            block[..n].copy_from_slice(filter);
            block[n..n + 2].copy_from_slice(&skip);
            block[n + 2..].fill(nop);
            patched += 1;
            i += FILTER_MAX_INSNS;
        } else {
            i += 1;
        }
    }
    Ok(patched)
}

/// Patches the placeholders of one opened (not yet loaded) program.
pub fn patch_program(
    prog: &mut libbpf_rs::OpenProgramMut<'_>,
    placeholders: &[(i32, &[Insn])],
) -> Result<usize, SpliceError> {
    // Insn has the layout of struct bpf_insn: u8 code, u8 dst:4/src:4
    // (little-endian bitfield order), s16 off, s32 imm.
    const _: () = assert!(size_of::<Insn>() == size_of::<libbpf_sys::bpf_insn>());
    let raw = prog.insns();
    let mut insns: Vec<Insn> = raw
        .iter()
        .map(|r| {
            // SAFETY: same size and both are plain old data (checked above).
            unsafe { std::mem::transmute_copy::<libbpf_sys::bpf_insn, Insn>(r) }
        })
        .collect();
    let mut patched = 0;
    for (magic, filter) in placeholders {
        patched += patch(&mut insns, *magic, filter)?;
    }
    if patched == 0 {
        return Ok(0);
    }
    let ptr = prog.as_libbpf_object().as_ptr();
    // SAFETY: the program is opened and not loaded (libbpf checks that and
    // returns -EBUSY otherwise); libbpf copies the instructions we pass, and
    // the count is unchanged so its relocation indexes stay valid.
    let rc = unsafe {
        libbpf_sys::bpf_program__set_insns(
            ptr,
            insns.as_mut_ptr() as *mut libbpf_sys::bpf_insn,
            insns.len() as _,
        )
    };
    if rc != 0 {
        return Err(SpliceError::Libbpf(std::io::Error::from_raw_os_error(-rc)));
    }
    Ok(patched)
}

/// Removes the `goto +0` padding the filters left in their placeholder
/// blocks, fixing the jumps that cross it, for programs we load ourselves
/// without func_info/line_info (the fentry copies): less to verify.
pub fn strip_padding(insns: &[Insn]) -> Vec<Insn> {
    let nop = Insn::new(JMP | JA, 0, 0, 0, 0);
    // Runs of at least 8 no-ops are padding (clang emits no such runs).
    let mut keep = vec![true; insns.len()];
    let mut i = 0;
    while i < insns.len() {
        if insns[i] == nop {
            let run = insns[i..].iter().take_while(|x| **x == nop).count();
            if run >= 8 {
                keep[i..i + run].fill(false);
            }
            i += run;
        } else {
            i += 1;
        }
    }
    // new_index[i]: where old instruction i (or, if removed, the next kept
    // one) lands.
    let mut new_index = vec![0usize; insns.len() + 1];
    let mut n = 0;
    for i in 0..insns.len() {
        new_index[i] = n;
        if keep[i] {
            n += 1;
        }
    }
    new_index[insns.len()] = n;
    let mut out = Vec::with_capacity(n);
    for (i, ins) in insns.iter().enumerate() {
        if !keep[i] {
            continue;
        }
        let mut ins = *ins;
        let class = ins.code & 0x07;
        let op = ins.code & 0xf0;
        let is_jump = (class == JMP || class == super::ebpf::JMP32)
            && op != super::ebpf::CALL
            && op != super::ebpf::EXIT;
        if is_jump {
            let target = (i as i64 + 1 + ins.off as i64) as usize;
            let off = new_index[target] as i64 - new_index[i] as i64 - 1;
            ins.off = off as i16;
        } else if is_subprog_call(&ins) {
            let target = (i as i64 + 1 + ins.imm as i64) as usize;
            ins.imm = (new_index[target] as i64 - new_index[i] as i64 - 1) as i32;
        }
        out.push(ins);
    }
    out
}

/// A call of a BPF function of the same program (src_reg BPF_PSEUDO_CALL):
/// its immediate is the offset of the callee.
fn is_subprog_call(ins: &Insn) -> bool {
    ins.code == CALL && ins.src() == 1
}

/// Where the program's functions start: 0 (the program itself) and every
/// callee of a bpf-to-bpf call, in order. These are the instruction offsets
/// of the program's BTF function records (func_info).
pub fn subprog_starts(insns: &[Insn]) -> Vec<u32> {
    let mut starts: Vec<u32> = insns
        .iter()
        .enumerate()
        .filter(|(_, ins)| is_subprog_call(ins))
        .map(|(i, ins)| (i as i64 + 1 + ins.imm as i64) as u32)
        .collect();
    starts.push(0);
    starts.sort_unstable();
    starts.dedup();
    starts
}

/// Sets the site id of a template copy: every `rX = SITE_MAGIC`.
pub fn set_site(insns: &mut [Insn], magic: i32, site: u32) -> usize {
    let mut n = 0;
    for i in insns.iter_mut() {
        // BPF_ALU64 | BPF_MOV | BPF_K
        if i.code == 0xb7 && i.imm == magic {
            i.imm = site as i32;
            n += 1;
        }
    }
    n
}

/// The instructions of a program, as libbpf holds them (after load: final,
/// relocated, with map file descriptors embedded).
pub fn program_insns(prog: &libbpf_rs::ProgramMut<'_>) -> Vec<Insn> {
    prog.insns()
        .iter()
        .map(|r| {
            // SAFETY: same size and both plain old data (see patch_program).
            unsafe { std::mem::transmute_copy::<libbpf_sys::bpf_insn, Insn>(r) }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placeholder(magic: i32) -> Vec<Insn> {
        let mut v = vec![Insn::new(CALL, 0, 0, 0, magic)];
        v.extend(std::iter::repeat_n(
            Insn::new(JMP | JA, 0, 0, 0, 0),
            FILTER_MAX_INSNS - 1,
        ));
        v
    }

    #[test]
    fn patches_in_place_keeping_length() {
        let mut prog = vec![Insn::new(0xb7, 1, 0, 0, 7)];
        prog.extend(placeholder(0x1234));
        prog.push(Insn::new(0x95, 0, 0, 0, 0));
        let len = prog.len();
        let filter = vec![Insn::new(0xb4, 0, 0, 0, 1)];
        assert_eq!(patch(&mut prog, 0x1234, &filter).unwrap(), 1);
        assert_eq!(prog.len(), len);
        assert_eq!(prog[1], filter[0]);
        // r1 = 0; if r1 == 0 goto the exit after the block
        assert_eq!(prog[2], Insn::new(0xb7, 1, 0, 0, 0));
        assert_eq!(prog[3].code, 0x15);
        assert_eq!(3 + 1 + prog[3].off as usize, len - 1, "lands on the exit");
        assert_eq!(prog[4], Insn::new(JMP | JA, 0, 0, 0, 0));
        assert_eq!(prog[len - 1].code, 0x95);
    }

    #[test]
    fn strip_padding_keeps_calls_right() {
        let nop = Insn::new(JMP | JA, 0, 0, 0, 0);
        // 0: call pc+11 (the function at 12); 1: exit; 2..12 nops;
        // 12: mov 1; 13: exit
        let mut prog = vec![Insn::new(CALL, 0, 1, 0, 11), Insn::new(0x95, 0, 0, 0, 0)];
        prog.extend(std::iter::repeat_n(nop, 10));
        prog.push(Insn::new(0xb7, 0, 0, 0, 1));
        prog.push(Insn::new(0x95, 0, 0, 0, 0));
        assert_eq!(subprog_starts(&prog), vec![0, 12]);
        let out = strip_padding(&prog);
        assert_eq!(out.len(), 4);
        assert_eq!(out[0].imm, 1, "to the mov");
        assert_eq!(subprog_starts(&out), vec![0, 2]);
    }

    #[test]
    fn strip_padding_keeps_jumps_right() {
        let ja = |off| Insn::new(JMP | JA, 0, 0, off, 0);
        let mov = |imm| Insn::new(0xb7, 0, 0, 0, imm);
        // 0: if r1 == 0 goto 12 (past the padding); 1: goto 12; 2..12 nops;
        // 12: mov 1; 13: goto -13 (back to 1)
        let mut prog = vec![Insn::new(JMP | 0x10, 1, 0, 11, 0), ja(10)];
        prog.extend(std::iter::repeat_n(ja(0), 10));
        prog.push(mov(1));
        prog.push(ja(-13));
        let out = strip_padding(&prog);
        assert_eq!(out.len(), 4);
        assert_eq!(out[0].off, 1, "to the mov");
        assert_eq!(out[1].off, 0, "to the mov");
        assert_eq!(out[3].off, -3, "back to insn 1");
    }

    #[test]
    fn rejects_truncated_placeholder() {
        let mut prog = placeholder(0x99);
        prog.truncate(10);
        assert!(patch(&mut prog, 0x99, &[]).is_err());
    }

    #[test]
    fn the_compiled_object_has_both_placeholders_per_slot() {
        let mut obj = libbpf_rs::ObjectBuilder::default()
            .open_memory(crate::kernel::objects::TP_BTF)
            .unwrap();
        let prog = obj
            .progs_mut()
            .find(|p| p.name() == "slot_0")
            .expect("slot_0");
        let insns: Vec<Insn> = prog
            .insns()
            .iter()
            .map(|r| unsafe { std::mem::transmute_copy::<libbpf_sys::bpf_insn, Insn>(r) })
            .collect();
        let count = |magic| {
            insns
                .iter()
                .filter(|i| i.code == CALL && i.imm == magic)
                .count()
        };
        assert_eq!(count(crate::abi::FILTER_MAGIC_L2), 1);
        assert_eq!(count(crate::abi::FILTER_MAGIC_L3), 1);
    }
}
