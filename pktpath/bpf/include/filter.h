/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The placeholders where user space splices the packet filter.
 *
 * Each placeholder is a call to a helper id that does not exist
 * (FILTER_MAGIC_L2 or FILTER_MAGIC_L3) followed by FILTER_MAX_INSNS - 1
 * "goto +0" no-ops. Before load, src/filter/splice.rs overwrites that block
 * in place with the eBPF translation of the user's cBPF filter, keeping the
 * instruction count, so no relocation or line info moves. The filter ends by
 * skipping the remaining no-ops with a branch the verifier knows is taken
 * (see splice.rs), so it removes them as dead code.
 * A program whose placeholder was not patched fails to load (unknown helper).
 *
 * Register contract, written here and in splice.rs:
 *   in:  r1 = struct filter_scratch * (map value, not NULL)
 *        r2 = bytes of packet in scratch->pkt (<= FILTER_PKT_MAX)
 *   out: r0 = non-zero when the packet matches
 *   clobbered: r1-r5. r6-r9 and the stack are untouched.
 */
#ifndef __PKTPATH_FILTER_H
#define __PKTPATH_FILTER_H

#include "pktpath.h"

/* The constants are enumerators (pktpath.h): immediate operands ("i"), as
 * the preprocessor cannot spell them into the assembly text. */
#define DEFINE_FILTER(name, magic)						\
static __always_inline __u64 name(struct filter_scratch *scratch, __u64 caplen)\
{										\
	register struct filter_scratch *r1 asm("r1") = scratch;		\
	register __u64 r2 asm("r2") = caplen;					\
	register __u64 r0 asm("r0");						\
										\
	asm volatile("call %[helper];\n"					\
		     ".rept %[insns] - 1;\n"					\
		     "goto +0;\n"						\
		     ".endr;\n"							\
		     : "=r"(r0), "+r"(r1), "+r"(r2)				\
		     : [helper] "i"(magic), [insns] "i"(FILTER_MAX_INSNS)	\
		     : "r3", "r4", "r5", "memory");				\
	return r0;								\
}

DEFINE_FILTER(filter_l2, FILTER_MAGIC_L2)
DEFINE_FILTER(filter_l3, FILTER_MAGIC_L3)

#endif
