/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The kernel/user ABI of pktpath: the read-only config set between open and
 * load, and the event records written to the ring buffer.
 *
 * This header is the one source of truth; pktpath/src/abi.rs holds the
 * Rust twins, and its tests compare them with the compiled object's BTF:
 * every member of every struct here (name, order, offset, size) and every
 * constant. So the constants are enumerators, not macros (a macro leaves no
 * trace in BTF), each enum is listed in struct pktpath_abi at the end (BTF
 * only has the types something uses), and a change here that abi.rs does not
 * follow fails `cargo test`.
 */
#ifndef __PKTPATH_H
#define __PKTPATH_H

enum limits {
	/* Tracepoint programs are generic slots: user space picks the
	 * tracepoint. pktpath.bpf.c defines slot_0 to slot_<MAX_SLOTS - 1>. */
	MAX_SLOTS = 48,
	/* Raw tracepoint arguments captured per event. */
	MAX_ARGS = 6,
	/* An argument index meaning "none" (skb_arg, qdisc_arg...). */
	ARG_NONE = 0xff,
	/* Bytes of packet the filter can look at, and bytes copied into events. */
	FILTER_PKT_MAX = 256,
	EVENT_PKT_MAX = 128,
	/* eBPF instructions reserved for each spliced filter (see filter.h). */
	FILTER_MAX_INSNS = 1024,
	/* Function sites: ids index func_cfgs[]; kprobes carry the id as cookie. */
	MAX_FUNCS = 16384,
};

/* Immediates that user space finds and replaces in the instructions. */
enum placeholder {
	/* Helper ids marking where the L2 and L3 filters go (filter.h). */
	FILTER_MAGIC_L2 = 0x70c2f11a,
	FILTER_MAGIC_L3 = 0x70c3f11a,
	/* The site id in the fentry/fexit templates, replaced in each copy
	 * (src/kernel/fentry.rs). */
	SITE_MAGIC = 0x51735173,
};

/* struct event.kind */
enum event_kind {
	EVENT_SKB = 1,	/* a tracepoint that takes the packet */
	EVENT_FIB4 = 2, /* fib_table_lookup, tied to the packet being routed */
	EVENT_FIB6 = 3, /* fib6_table_lookup */
	EVENT_NEIGH = 4, /* neigh_event_send_{done,dead} */
	EVENT_FUNC = 5,	 /* entry of a kernel function that takes the packet */
	EVENT_FUNC_RET = 6, /* return of a function that gives a packet */
	EVENT_SOCK = 7,	 /* sk_data_ready: queued to a datagram socket */
};

/* struct func_cfg.flags */
enum func_flags {
	FUNC_F_RETURNS_SKB = 0x1, /* traced on return too (fexit/kretprobe) */
	FUNC_F_NO_START = 0x2,	  /* packets first seen here start no journey */
	FUNC_F_SKB_PTRPTR = 0x4,  /* the argument is struct sk_buff **: read through it */
};

struct func_cfg {
	unsigned char skb_arg; /* index of the struct sk_buff * argument, ARG_NONE: none */
	unsigned char role;    /* enum slot_role */
	unsigned char flags;   /* FUNC_F_* */
	unsigned char nf_state_arg; /* index of a struct nf_hook_state * argument, ARG_NONE: none;
				     * its hook and protocol family go in args[1], args[2] */
};

/* struct event.flags */
enum event_flags {
	EVENT_F_FIRST = 0x1,	  /* first event of its journey */
	EVENT_F_L3 = 0x2,	  /* data[] starts at the network header */
	EVENT_F_CORRELATED = 0x4, /* tied to the packet by CPU and addresses */
};

/* struct slot_cfg.role: what a site means for tracking */
enum slot_role {
	ROLE_PASS = 0,	  /* the packet goes on */
	ROLE_FREE = 1,	  /* the skb is freed here: stop tracking */
	ROLE_DELIVER = 2, /* copied to a socket: ends unless copied again */
	ROLE_FREED = 3,	  /* tracking state: freed, memory not yet released */
};

/* struct slot_cfg.flags */
enum slot_flags {
	SLOT_F_NO_START = 0x1, /* packets first seen here start no journey */
	SLOT_F_CONSUME = 0x2,  /* frees a packet that was done with (not a drop) */
};

struct slot_cfg {
	unsigned char skb_arg;	 /* index of the struct sk_buff * argument */
	unsigned char nargs;	 /* number of tracepoint arguments */
	unsigned char qdisc_arg; /* index of a struct Qdisc * argument, or ARG_NONE */
	unsigned char role;	 /* enum slot_role */
	unsigned char sock_arg;	 /* index of a struct sock * argument, or ARG_NONE */
	unsigned char flags;	 /* SLOT_F_* */
	unsigned char dev_arg;	 /* index of a struct net_device * argument, or ARG_NONE */
	unsigned char pad;
};

/*
 * The bytes a filter reads, when they are few and at fixed places
 * (cbpf::read_set): its answer is a function of them, remembered for every
 * packet that has the same ones (see flow_word()).
 */
struct read_set {
	unsigned long long abs[8]; /* byte masks over the view's first 64 bytes */
	unsigned long long ind[4]; /* over the 32 at X = 4 * (P[msh] & 0xf) */
	unsigned char on;	   /* the filter reads nothing else */
	unsigned char msh;	   /* where the header-length byte is, < 64 */
	unsigned char pad[6];
};

struct config {
	unsigned long long stale_ns;  /* tracking entries idle longer are reused */
	unsigned int netns;	      /* only packets in this netns (inode), 0: any */
	unsigned int ifindex;	      /* only packets on this device, 0: any */
	unsigned int mark;	      /* only packets with (mark & mark_mask) == mark */
	unsigned int mark_mask;	      /* 0: no mark selection */
	unsigned char fib_correlate;  /* tie FIB lookups to packets */
	unsigned char funcs_active;   /* function sites attached: see end() */
	unsigned short filter_bytes;  /* bytes of the packet the filter reads */
	unsigned char pad[4];
	/* The filter's, for Ethernet (IPv4, IPv6, other ethertypes), then for
	 * IP (IPv4, IPv6, other versions); see read_set_of(). */
	struct read_set reads[6];
	struct slot_cfg slots[MAX_SLOTS];
};

struct event {
	unsigned long long ts;	    /* bpf_ktime_get_ns() */
	unsigned long long skb;	    /* skb address: the packet's identity */
	unsigned long long journey; /* journey id, from 1 */
	unsigned long long args[MAX_ARGS]; /* raw tracepoint arguments */
	unsigned int netns;	    /* netns inode of the device (or socket) */
	unsigned int ifindex;
	unsigned int len;	    /* skb->len */
	unsigned int mark;
	unsigned int qdisc_handle;
	unsigned short site;	    /* slot index, or special site id */
	unsigned short kind;	    /* enum event_kind */
	unsigned short cpu;
	unsigned short protocol;    /* skb->protocol, network order */
	unsigned short data_len;    /* valid bytes in data[] */
	unsigned char flags;	    /* EVENT_F_* */
	unsigned char pad;
	unsigned int ct_status;	    /* nf_conn->status (IPS_* bits) */
	unsigned short ct_zone;
	unsigned char ct_info;	    /* (skb->_nfct & 7) + 1; 0: no conntrack entry */
	unsigned char pad2;
	unsigned short vlan_tci;    /* skb->vlan_tci: the tag held outside the data */
	unsigned short vlan_proto;  /* network order; 0: no such tag */
	unsigned char ct_orig[40];  /* struct nf_conntrack_tuple, original direction */
	unsigned char ct_reply[40]; /* and reply direction (NAT shows as the difference) */
	char dev[16];		    /* device name */
	char qdisc_kind[16];	    /* qdisc ops id, for qdisc sites */
	unsigned char data[EVENT_PKT_MAX]; /* packet from L2 or L3; FIB: addresses */
	unsigned int pad3;	    /* to the alignment of ts: no padding unnamed */
};

/* Per-CPU scratch the filter reads: the packet, cBPF memory, wire length. */
struct filter_scratch {
	unsigned char pkt[FILTER_PKT_MAX];
	unsigned int mem[16];
	unsigned int wirelen;
	unsigned int pad;
};

/* counters[] indexes */
enum counter {
	CNT_LOST = 0,	  /* ring buffer full: event lost */
	CNT_FILTERED = 1, /* filter runs */
	CNT_SELECTED = 2, /* packets selected (journeys started) */
	CNT_EVENTS = 3,	  /* events emitted */
	CNT_MAX = 4,
};

/*
 * One member per enum above, so that each is in the object's BTF: clang
 * writes a type there only when a variable, function or map uses it, and
 * using an enumerator does not use its enum. The variable is alone in an ELF
 * section that libbpf skips (it is no map, and no program reads it); only
 * its BTF is loaded, as with the license.
 */
struct pktpath_abi {
	enum limits limits;
	enum placeholder placeholder;
	enum event_kind event_kind;
	enum func_flags func_flags;
	enum event_flags event_flags;
	enum slot_role slot_role;
	enum slot_flags slot_flags;
	enum counter counter;
};
const struct pktpath_abi pktpath_abi __attribute__((section(".pktpath_abi"), used)) = {};

#endif
