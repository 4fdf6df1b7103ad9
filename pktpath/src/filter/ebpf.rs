//! Classic BPF to eBPF translation.
//!
//! The output follows the register contract of bpf/include/filter.h:
//! r1 points to `struct filter_scratch` (packet bytes, then the 16 cBPF
//! memory words, then the wire length), r2 holds the number of packet bytes,
//! and the verdict is left in r0. cBPF's accumulator A lives in r4 and the
//! index X in r5; r3 and r0 are temporaries. All arithmetic is 32-bit (ALU32
//! and JMP32), as in cBPF. Every packet load is bounds-checked twice: against
//! the constant buffer size (so the verifier can prove the access safe) and
//! against r2 (so short packets fail the way libpcap's interpreter fails:
//! the filter returns 0).

use super::cbpf::CInsn;
use super::FilterError;
use crate::abi::{FILTER_PKT_MAX, SCRATCH_MEM_OFF, SCRATCH_WIRELEN_OFF};

/// One eBPF instruction, laid out as the kernel's struct bpf_insn.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Insn {
    pub code: u8,
    /// dst_reg in the low nibble, src_reg in the high nibble.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    pub fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn {
            code,
            regs: (src << 4) | (dst & 0xf),
            off,
            imm,
        }
    }
    pub fn dst(&self) -> u8 {
        self.regs & 0xf
    }
    pub fn src(&self) -> u8 {
        self.regs >> 4
    }
    /// The 8 bytes of this instruction, as the kernel reads them.
    pub fn to_bytes(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = self.regs;
        b[2..4].copy_from_slice(&self.off.to_le_bytes());
        b[4..8].copy_from_slice(&self.imm.to_le_bytes());
        b
    }
}

// eBPF opcode parts (include/uapi/linux/bpf.h, bpf_common.h).
pub const LD: u8 = 0x00;
pub const LDX: u8 = 0x01;
pub const ST: u8 = 0x02;
pub const STX: u8 = 0x03;
pub const ALU: u8 = 0x04;
pub const JMP: u8 = 0x05;
pub const JMP32: u8 = 0x06;
pub const ALU64: u8 = 0x07;
pub const W: u8 = 0x00;
pub const H: u8 = 0x08;
pub const B: u8 = 0x10;
pub const MEM: u8 = 0x60;
pub const K: u8 = 0x00;
pub const X: u8 = 0x08;
pub const ADD: u8 = 0x00;
pub const SUB: u8 = 0x10;
pub const MUL: u8 = 0x20;
pub const DIV: u8 = 0x30;
pub const OR: u8 = 0x40;
pub const AND: u8 = 0x50;
pub const LSH: u8 = 0x60;
pub const RSH: u8 = 0x70;
pub const NEG: u8 = 0x80;
pub const MOD: u8 = 0x90;
pub const XOR: u8 = 0xa0;
pub const MOV: u8 = 0xb0;
pub const END: u8 = 0xd0;
pub const TO_BE: u8 = 0x08;
pub const JA: u8 = 0x00;
pub const JEQ: u8 = 0x10;
pub const JGT: u8 = 0x20;
pub const JGE: u8 = 0x30;
pub const JSET: u8 = 0x40;
pub const JLT: u8 = 0xa0;
pub const CALL: u8 = 0x80;
pub const EXIT: u8 = 0x90;

const R0: u8 = 0;
const R_BUF: u8 = 1;
const R_LEN: u8 = 2;
const R_TMP: u8 = 3;
const R_A: u8 = 4;
const R_X: u8 = 5;

/// Where a jump goes, resolved once the layout is known.
#[derive(Clone, Copy)]
enum Target {
    Cbpf(usize),
    Fail,
    Exit,
}

struct Emitter {
    out: Vec<Insn>,
    /// Jumps to patch: (index in out, target).
    fixups: Vec<(usize, Target)>,
}

impl Emitter {
    fn op(&mut self, i: Insn) {
        self.out.push(i);
    }
    fn jump(&mut self, code: u8, dst: u8, src: u8, imm: i32, t: Target) {
        self.fixups.push((self.out.len(), t));
        self.out.push(Insn::new(code, dst, src, 0, imm));
    }
    fn alu32_k(&mut self, op: u8, dst: u8, imm: u32) {
        self.op(Insn::new(ALU | op | K, dst, 0, 0, imm as i32));
    }
    fn mov32_r(&mut self, dst: u8, src: u8) {
        self.op(Insn::new(ALU | MOV | X, dst, src, 0, 0));
    }
    fn ldx(&mut self, size: u8, dst: u8, src: u8, off: i16) {
        self.op(Insn::new(LDX | size | MEM, dst, src, off, 0));
    }
    fn swap_to_be(&mut self, size: u8, reg: u8) {
        match size {
            W => self.op(Insn::new(ALU | END | TO_BE, reg, 0, 0, 32)),
            H => self.op(Insn::new(ALU | END | TO_BE, reg, 0, 0, 16)),
            _ => {}
        }
    }
}

fn load_size(code: u16) -> Option<(u8, u32)> {
    match code & 0x18 {
        0x00 => Some((W, 4)),
        0x08 => Some((H, 2)),
        0x10 => Some((B, 1)),
        _ => None,
    }
}

fn mem_off(k: u32) -> Option<i16> {
    (k < 16).then(|| SCRATCH_MEM_OFF + 4 * k as i16)
}

/// Translates a classic BPF program into eBPF following the contract above.
pub fn translate(prog: &[CInsn]) -> Result<Vec<Insn>, FilterError> {
    let mut e = Emitter {
        out: Vec::with_capacity(prog.len() * 4),
        fixups: Vec::new(),
    };
    let mut starts = Vec::with_capacity(prog.len());
    // cBPF starts with A = X = 0.
    e.alu32_k(MOV, R_A, 0);
    e.alu32_k(MOV, R_X, 0);
    for (pc, ins) in prog.iter().enumerate() {
        starts.push(e.out.len());
        let unsupported = FilterError::Unsupported {
            index: pc,
            code: ins.code,
        };
        let next = |off: u32| Target::Cbpf(pc + 1 + off as usize);
        let k = ins.k;
        match ins.code & 0x07 {
            // BPF_LD / BPF_LDX
            0x00 | 0x01 => {
                let dst = if ins.code & 0x07 == 0 { R_A } else { R_X };
                match ins.code & 0xe0 {
                    0x00 => e.alu32_k(MOV, dst, k), // IMM
                    0x20 if dst == R_A => {
                        // ABS
                        let (size, n) = load_size(ins.code).ok_or(unsupported)?;
                        if k as u64 + n as u64 > FILTER_PKT_MAX as u64 {
                            e.jump(JMP | JA, 0, 0, 0, Target::Fail);
                        } else {
                            e.jump(JMP | JLT | K, R_LEN, 0, (k + n) as i32, Target::Fail);
                            e.ldx(size, R_A, R_BUF, k as i16);
                            e.swap_to_be(size, R_A);
                        }
                    }
                    0x40 if dst == R_A => {
                        // IND: offset X + k, wrapping in 32 bits like cBPF.
                        let (size, n) = load_size(ins.code).ok_or(unsupported)?;
                        e.mov32_r(R_TMP, R_X);
                        e.alu32_k(ADD, R_TMP, k);
                        e.jump(
                            JMP | JGT | K,
                            R_TMP,
                            0,
                            (FILTER_PKT_MAX as u32 - n) as i32,
                            Target::Fail,
                        );
                        e.op(Insn::new(ALU64 | MOV | X, R0, R_TMP, 0, 0));
                        e.op(Insn::new(ALU64 | ADD | K, R0, 0, 0, n as i32));
                        e.jump(JMP | JGT | X, R0, R_LEN, 0, Target::Fail);
                        e.op(Insn::new(ALU64 | MOV | X, R0, R_BUF, 0, 0));
                        e.op(Insn::new(ALU64 | ADD | X, R0, R_TMP, 0, 0));
                        e.ldx(size, R_A, R0, 0);
                        e.swap_to_be(size, R_A);
                    }
                    0x60 => e.ldx(W, dst, R_BUF, mem_off(k).ok_or(unsupported)?), // MEM
                    0x80 => e.ldx(W, dst, R_BUF, SCRATCH_WIRELEN_OFF),            // LEN
                    0xa0 if dst == R_X && ins.code & 0x18 == 0x10 => {
                        // MSH: X = 4 * (P[k] & 0xf)
                        if k as u64 >= FILTER_PKT_MAX as u64 {
                            e.jump(JMP | JA, 0, 0, 0, Target::Fail);
                        } else {
                            e.jump(JMP | JLT | K, R_LEN, 0, (k + 1) as i32, Target::Fail);
                            e.ldx(B, R_X, R_BUF, k as i16);
                            e.alu32_k(AND, R_X, 0xf);
                            e.alu32_k(LSH, R_X, 2);
                        }
                    }
                    _ => return Err(unsupported),
                }
            }
            // BPF_ST / BPF_STX
            0x02 | 0x03 => {
                let src = if ins.code & 0x07 == 0x02 { R_A } else { R_X };
                let off = mem_off(k).ok_or(unsupported)?;
                e.op(Insn::new(STX | W | MEM, R_BUF, src, off, 0));
            }
            // BPF_ALU
            0x04 => {
                let op = (ins.code & 0xf0) as u8;
                let by_x = ins.code & 0x08 != 0;
                match op {
                    NEG => e.op(Insn::new(ALU | NEG, R_A, 0, 0, 0)),
                    ADD | SUB | MUL | OR | AND | XOR => {
                        if by_x {
                            e.op(Insn::new(ALU | op | X, R_A, R_X, 0, 0));
                        } else {
                            e.alu32_k(op, R_A, k);
                        }
                    }
                    DIV | MOD => {
                        if by_x {
                            // libpcap: division by zero rejects the packet.
                            e.jump(JMP | JEQ | K, R_X, 0, 0, Target::Fail);
                            e.op(Insn::new(ALU | op | X, R_A, R_X, 0, 0));
                        } else if k == 0 {
                            e.jump(JMP | JA, 0, 0, 0, Target::Fail);
                        } else {
                            e.alu32_k(op, R_A, k);
                        }
                    }
                    LSH | RSH => {
                        if by_x {
                            // libpcap: shifting by 32 or more gives 0.
                            e.op(Insn::new(JMP | JLT | K, R_X, 0, 2, 32));
                            e.alu32_k(MOV, R_A, 0);
                            e.op(Insn::new(JMP | JA, 0, 0, 1, 0));
                            e.op(Insn::new(ALU | op | X, R_A, R_X, 0, 0));
                        } else if k >= 32 {
                            e.alu32_k(MOV, R_A, 0);
                        } else {
                            e.alu32_k(op, R_A, k);
                        }
                    }
                    _ => return Err(unsupported),
                }
            }
            // BPF_JMP
            0x05 => {
                let op = (ins.code & 0xf0) as u8;
                if op == JA {
                    e.jump(JMP | JA, 0, 0, 0, next(k));
                } else {
                    if !matches!(op, JEQ | JGT | JGE | JSET) {
                        return Err(unsupported);
                    }
                    if ins.code & 0x08 != 0 {
                        e.jump(JMP32 | op | X, R_A, R_X, 0, next(ins.jt as u32));
                    } else {
                        e.jump(JMP32 | op | K, R_A, 0, k as i32, next(ins.jt as u32));
                    }
                    if ins.jf != 0 {
                        e.jump(JMP | JA, 0, 0, 0, next(ins.jf as u32));
                    }
                }
            }
            // BPF_RET
            0x06 => {
                match ins.code & 0x18 {
                    0x00 => e.alu32_k(MOV, R0, k),
                    0x08 => e.mov32_r(R0, R_X),
                    0x10 => e.mov32_r(R0, R_A),
                    _ => return Err(unsupported),
                }
                e.jump(JMP | JA, 0, 0, 0, Target::Exit);
            }
            // BPF_MISC
            _ => match ins.code & 0xf8 {
                0x00 => e.mov32_r(R_X, R_A), // TAX
                0x80 => e.mov32_r(R_A, R_X), // TXA
                _ => return Err(unsupported),
            },
        }
    }
    // Failed loads reject the packet, like libpcap. Emitted only when used:
    // the verifier refuses unreachable instructions.
    let fail = e.out.len();
    if e.fixups.iter().any(|(_, t)| matches!(t, Target::Fail)) {
        e.alu32_k(MOV, R0, 0);
    }
    let exit = e.out.len();
    for (at, target) in std::mem::take(&mut e.fixups) {
        let to = match target {
            Target::Cbpf(pc) => *starts
                .get(pc)
                .ok_or(FilterError::Unsupported { index: pc, code: 0 })?,
            Target::Fail => fail,
            Target::Exit => exit,
        };
        let off = to as i64 - at as i64 - 1;
        e.out[at].off =
            i16::try_from(off).map_err(|_| FilterError::TooLarge(e.out.len(), 32767))?;
    }
    Ok(e.out)
}
