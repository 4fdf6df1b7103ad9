// SPDX-License-Identifier: GPL-2.0
/*
 * Tracepoint programs of pktpath.
 *
 * Every tracepoint that takes a struct sk_buff * is served by one generic
 * "slot" program; user space picks the tracepoint of each slot (through BTF)
 * and describes its arguments in the read-only config. A packet is tested
 * against the user's filter the first time a slot sees it; when it matches,
 * its skb address enters the `tracked` map and from then on every site only
 * does one map lookup to know it belongs to a journey ("filter once, then
 * track"). FIB and neighbour tracepoints carry no skb: they are tied to the
 * packet that the same CPU is handling (see correlate_*()).
 *
 * Built twice by build.rs: with tp_btf sections (default) and, with
 * PKTPATH_RAW_TP, raw_tp sections for kernels without tp_btf. The code only
 * reads kernel memory through bpf_probe_read_kernel, so it is valid for both.
 */
#include "vmlinux_min.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "pktpath.h"
#include "filter.h"

char LICENSE[] SEC("license") = "GPL";

#ifdef PKTPATH_RAW_TP
#define TP_SEC(name) SEC("raw_tp/" name)
#else
#define TP_SEC(name) SEC("tp_btf/" name)
#endif

#define MAC_UNSET 0xffff
#define ARPHRD_ETHER 1
#define ETH_P_IP 0x0800
#define AF_NETLINK 16
#define ETH_P_IPV6 0x86DD
#define IPPROTO_UDP 17
#define IPPROTO_UDPLITE 136
#define IPPROTO_ICMP 1
#define IPPROTO_ICMPV6 58
#define SOCK_DGRAM 2
#define AF_INET6 10
#define CORRELATE_NS 2000000ULL /* FIB lookup to packet, same CPU */
/*
 * An input route lookup to the packet: longer, because it is also tied by
 * the packet being the last skb a site saw on this CPU (cpu_seen), and an
 * interrupt between the packet's last site and its lookup can take more
 * than CORRELATE_NS under emulation.
 */
#define FIB_INPUT_NS 20000000ULL
#define LOOPBACK_IFINDEX 1

const volatile struct config cfg = {};

/* Next journey id (ids start at 1). */
__u64 next_journey = 0;

struct track {
	__u64 journey;
	__u64 last_ts;
	__u64 fp;    /* header fingerprint, see fingerprint() */
	__u64 inner_fp; /* of the packet it carries, when a tunnel packet */
	__u64 head;  /* skb->head where last seen, 0: unknown */
	__u16 state; /* ROLE_PASS or ROLE_DELIVER */
	__u8 frag;   /* an IPv4 fragment (see frag_join()) */
	__u8 pad;
	__u16 mac;   /* skb->mac_header and network_header where last seen */
	__u16 nh;
};

/* The packet each CPU handled last, to tie FIB/neighbour events to it. */
struct current {
	__u64 skb;
	__u64 journey;
	__u64 ts;
	__u32 ifindex;
	__u32 netns;
	__u32 saddr4;
	__u32 daddr4;
	__u32 gw4; /* gateway of the last route looked up for it */
	__u32 pad;
	__u8 saddr6[16];
	__u8 daddr6[16];
	__u8 gw6[16]; /* gateway of the last IPv6 route looked up for it */
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20);
} events SEC(".maps");

/*
 * Wake the reader only when a batch waits: a wake-up per event cost the
 * reader a system call per event (most of its time at high rates). The
 * wake-up goes with the event that crosses 128 KiB (or 4 MiB, should that
 * one have been missed), not with every event past it: those would each
 * queue a wake-up while the reader is already on its way. The reader also
 * polls every 100 ms, so a lone event waits at most that.
 */
#define WAKEUP_BYTES (128 << 10)
#define WAKEUP_LATE (4 << 20)
/* enum in uapi linux/bpf.h, not in vmlinux_min.h */
#define BPF_RB_NO_WAKEUP 1
#define BPF_RB_FORCE_WAKEUP 2
#define BPF_RB_AVAIL_DATA 0
static __always_inline __u64 rb_flags(void)
{
	__u64 avail = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	const __u64 step = 2 * sizeof(struct event);

	if ((avail >= WAKEUP_BYTES && avail < WAKEUP_BYTES + step) ||
	    (avail >= WAKEUP_LATE && avail < WAKEUP_LATE + step))
		return BPF_RB_FORCE_WAKEUP;
	return BPF_RB_NO_WAKEUP;
}

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct track);
} tracked SEC(".maps");

/*
 * Who an skb is: its buffer, where data and tail are, and its header
 * offsets and protocol (for the rejection digest and the packet view).
 */
struct skb_ident {
	__u64 head;
	__u64 data;
	__u32 tail;
	__u16 nh;    /* skb->network_header */
	__u16 mac;   /* skb->mac_header */
	__u16 proto; /* skb->protocol */
	__u16 pad[3];
};

#ifndef PKTPATH_RAW_TP
/*
 * Copies chunks x 16 bytes of kernel memory at src to w with loads through
 * bpf_rdonly_cast() (6.2), which the verifier guards and the JIT keeps
 * plain (a fault reads as 0), where a helper call costs as much as the rest
 * of a site's check. Only where bpf_ksym_exists(bpf_rdonly_cast). Stored
 * as the 64-bit words callers read (stores of another type would not
 * alias their loads for the compiler).
 */
static __always_inline void read_loads(__u64 *w, __u64 src, const __u32 chunks)
{
	__u32 i;

	for (i = 0; i < chunks; i++) {
		struct in6_addr *a = bpf_core_cast((void *)(src + 16 * i), struct in6_addr);

		w[2 * i] = a->in6_u.u6_addr32[0] | (__u64)a->in6_u.u6_addr32[1] << 32;
		w[2 * i + 1] = a->in6_u.u6_addr32[2] | (__u64)a->in6_u.u6_addr32[3] << 32;
	}
}
#endif

/*
 * protocol, network_header, mac_header, tail, end, head and data sit next
 * to each other in struct sk_buff (5.x and 6.x without KCOV): one 40-byte
 * read from the 8-byte word holding network_header gets them all, where reading each
 * would cost a helper call. Offsets are relocated (CO-RE), so the checks
 * below are on constants; another layout takes five reads. The read starts
 * 8-aligned, so each field keeps its natural alignment in `span` (the
 * verifier wants aligned stack reads).
 */
static __always_inline bool skb_ident(struct sk_buff *skb, struct skb_ident *id)
{
	__u32 base = bpf_core_field_offset(skb->network_header) & ~7U;
	__u32 o_nh = bpf_core_field_offset(skb->network_header) - base;
	__u32 o_mac = bpf_core_field_offset(skb->mac_header) - base;
	__u32 o_proto = bpf_core_field_offset(skb->protocol) - base;
	__u32 o_tail = bpf_core_field_offset(skb->tail) - base;
	__u32 o_head = bpf_core_field_offset(skb->head) - base;
	__u32 o_data = bpf_core_field_offset(skb->data) - base;
	__u8 span[40];

	id->pad[0] = id->pad[1] = id->pad[2] = 0;
	if (o_mac <= 38 && o_proto <= 38 && o_tail <= 36 && o_head <= 32 && o_data <= 32) {
		if (bpf_probe_read_kernel(span, sizeof(span), (void *)skb + base))
			return false;
		id->nh = *(__u16 *)(span + (o_nh & ~1U));
		id->mac = *(__u16 *)(span + (o_mac & ~1U));
		id->proto = *(__u16 *)(span + (o_proto & ~1U));
		id->tail = *(__u32 *)(span + (o_tail & ~3U));
		id->head = *(__u64 *)(span + (o_head & ~7U));
		id->data = *(__u64 *)(span + (o_data & ~7U));
	} else {
		id->nh = BPF_CORE_READ(skb, network_header);
		id->mac = BPF_CORE_READ(skb, mac_header);
		id->proto = BPF_CORE_READ(skb, protocol);
		id->tail = BPF_CORE_READ(skb, tail);
		id->head = (__u64)BPF_CORE_READ(skb, head);
		id->data = (__u64)BPF_CORE_READ(skb, data);
	}
	return id->head != 0;
}

/*
 * What an event reports of an skb beside its identity: its length, mark,
 * the VLAN tag held outside the data and the conntrack pointer.
 */
struct skb_meta {
	__u64 nfct; /* skb->_nfct, 0 without conntrack */
	__u32 len;
	__u32 mark;
	__u16 vlan_proto;
	__u16 vlan_tci;
	__u32 pad;
};

/*
 * _nfct, len, vlan_proto, vlan_tci and mark lie within 64 bytes of each
 * other (5.x and 6.x): one read for the five from the first, as in
 * skb_ident(); another layout takes five reads.
 */
static __always_inline void skb_meta(struct sk_buff *skb, struct skb_meta *m)
{
	bool ct = bpf_core_field_exists(skb->_nfct);
	__u32 first = ct ? bpf_core_field_offset(skb->_nfct) : bpf_core_field_offset(skb->len);
	__u32 base = first & ~7U;
	__u32 o_ct = ct ? bpf_core_field_offset(skb->_nfct) - base : 0;
	__u32 o_len = bpf_core_field_offset(skb->len) - base;
	__u32 o_mark = bpf_core_field_offset(skb->mark) - base;
	__u32 o_vp = bpf_core_field_offset(skb->vlan_proto) - base;
	__u32 o_vt = bpf_core_field_offset(skb->vlan_tci) - base;
	__u8 span[64];

	m->pad = 0;
	m->nfct = 0;
	if (o_ct <= 56 && o_len <= 60 && o_mark <= 60 && o_vp <= 62 && o_vt <= 62 &&
	    !bpf_probe_read_kernel(span, sizeof(span), (void *)skb + base)) {
		if (ct)
			m->nfct = *(__u64 *)(span + (o_ct & ~7U));
		m->len = *(__u32 *)(span + (o_len & ~3U));
		m->mark = *(__u32 *)(span + (o_mark & ~3U));
		m->vlan_proto = *(__u16 *)(span + (o_vp & ~1U));
		m->vlan_tci = *(__u16 *)(span + (o_vt & ~1U));
		return;
	}
	if (ct)
		m->nfct = BPF_CORE_READ(skb, _nfct);
	m->len = BPF_CORE_READ(skb, len);
	m->mark = BPF_CORE_READ(skb, mark);
	m->vlan_proto = BPF_CORE_READ(skb, vlan_proto);
	m->vlan_tci = BPF_CORE_READ(skb, vlan_tci);
}

/*
 * Packets the filter turned down, so that later sites skip them with one
 * array read instead of reading and filtering the headers again.
 *
 * By packet: a clone (TCP transmits one of every segment), or the skb
 * after a header was pushed or pulled, is the same packet: same data
 * buffer (head) and the same network and transport header bytes (TTL, hop
 * limit and IPv4 checksum aside: forwarding changes them). Another packet
 * in a reused buffer differs in those bytes (IPv4 id, TCP sequence, UDP
 * checksum, lengths), a rewritten one (NAT) too, and is looked at again.
 *
 * By skb, for packets whose IP header is not written yet: the same skb,
 * buffer, data and tail. Pushing a header (transmit) or pulling one
 * (receive) changes them, and the packet is looked at again: a filter on
 * inner headers still sees them after decapsulation.
 *
 * A cache, not a table: the slot is a hash of the buffer (or skb) address,
 * the value one 64-bit word mixing everything above, written and read
 * whole from any CPU without a lock. A collision overwrites an older word
 * (that packet is filtered again at its next site); a word left by a freed
 * packet matches no other. An LRU hash did this at ~290 ns per insert and
 * ~130 ns per delete (bpf_stats, 6.18): most of an unselected packet's
 * cost.
 */
#define PKT_KEY_LEN 48
#define REJECT_SLOTS 65536

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, REJECT_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} rejected SEC(".maps");

static __always_inline __u64 mix(__u64 h, __u64 v)
{
	h = (h ^ v) * 0x9e3779b97f4a7c15ULL;
	return h ^ (h >> 31);
}

static __always_inline __u32 reject_slot(__u64 addr)
{
	return (__u32)((addr * 0x9e3779b97f4a7c15ULL) >> 48) & (REJECT_SLOTS - 1);
}

/*
 * How many tracked skbs hash to each bucket: where a bucket is 0 the skb
 * is not tracked, known with one array load instead of a hash lookup (most
 * runs of sites where no journey starts; all of them when the filter
 * matches nothing). Counted up on insert and down on a delete that found
 * the entry; LRU evictions are not seen, so a count may stay above the
 * truth (a lookup more), never below.
 */
#define TRACK_BUCKETS 4096

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, TRACK_BUCKETS);
	__type(key, __u32);
	__type(value, __u32);
} track_count SEC(".maps");

static __always_inline __u32 *track_bucket(__u64 skb)
{
	__u32 b = (__u32)((skb * 0x9e3779b97f4a7c15ULL) >> 52) & (TRACK_BUCKETS - 1);

	return bpf_map_lookup_elem(&track_count, &b);
}

/*
 * How many skbs are tracked, the sum of track_count: 0 while nothing is
 * followed (always, when the filter matches nothing), told by one word all
 * sites share and keep in cache, where a bucket is a line of its own (a
 * continuation site's run went from ~330 to ~240 ns by bpf_stats, 6.18,
 * an empty program's being ~230 there). Like a bucket, it stays above the
 * truth after LRU evictions.
 */
__u64 tracked_total = 0;

/* Whether skb may be tracked (false: it is not). */
static __always_inline bool maybe_tracked(__u64 skb)
{
	__u32 *n;

	if (!tracked_total)
		return false;
	n = track_bucket(skb);

	return !n || *n;
}

/* skb's tracking entry, NULL when not followed: most skbs are told by
 * their empty bucket, without the hash lookup. */
static __always_inline struct track *followed(__u64 skb)
{
	return maybe_tracked(skb) ? bpf_map_lookup_elem(&tracked, &skb) : NULL;
}

static __always_inline void track_put(__u64 skb, struct track *t)
{
	__u32 *n = track_bucket(skb);

	/* Counted before the insert: a site never finds it tracked with a
	 * total of 0. */
	__sync_fetch_and_add(&tracked_total, 1);
	if (bpf_map_update_elem(&tracked, &skb, t, BPF_NOEXIST)) {
		__sync_fetch_and_add(&tracked_total, -1);
		return;
	}
	if (n)
		__sync_fetch_and_add(n, 1);
}

static __always_inline void track_del(__u64 skb)
{
	__u32 *n = track_bucket(skb);

	if (bpf_map_delete_elem(&tracked, &skb))
		return;
	__sync_fetch_and_add(&tracked_total, -1);
	if (n)
		__sync_fetch_and_add(n, -1);
}

/*
 * What this CPU's sites saw last.
 *
 * skb: the skb of the last site this CPU ran, if that site emitted an
 * event for it (0 when the last site saw a packet not followed). An input
 * route lookup belongs to the current packet only if no other packet came
 * to a site since (see fib4); the address alone cannot tell, since a
 * packet freed unseen leaves it to the next one.
 */
struct cpu_seen {
	__u64 skb;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cpu_seen);
} cpu_seen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct filter_scratch);
} scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct current);
} cpu_current SEC(".maps");

/* A FIB lookup made before its packet existed (local output). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct event);
} pending_fib SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_FUNCS);
	__type(key, __u32);
	__type(value, struct func_cfg);
} func_cfgs SEC(".maps");

/* kprobe backends: the packet a function was called with, until it returns. */
struct ret_stash {
	__u64 skb;
	__u32 site;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct ret_stash);
} stash SEC(".maps");

/* A next-hop resolution made before its packet existed (local output). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct event);
} pending_neigh SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline void count(__u32 which)
{
	__u64 *c = bpf_map_lookup_elem(&counters, &which);

	if (c)
		*c += 1;
}

/*
 * Tracepoint argument i; i is a constant once the verifier reads cfg. Each
 * load is written in asm so that clang cannot merge the cases into a
 * computed ctx offset, which the verifier rejects.
 */
#define CTX_LOAD(ctx, off) ({ \
	__u64 __v; \
	asm volatile("%0 = *(u64 *)(%1 + " #off ")" : "=r"(__v) : "r"(ctx)); \
	__v; })

static __always_inline __u64 ctx_arg(__u64 *ctx, __u32 i)
{
	switch (i) {
	case 0: return CTX_LOAD(ctx, 0);
	case 1: return CTX_LOAD(ctx, 8);
	case 2: return CTX_LOAD(ctx, 16);
	case 3: return CTX_LOAD(ctx, 24);
	case 4: return CTX_LOAD(ctx, 32);
	case 5: return CTX_LOAD(ctx, 40);
	}
	return 0;
}

/* Where the packet's bytes start (L2 when there is an Ethernet header). */
struct pkt_view {
	unsigned char *head;
	unsigned char *start;
	__u64 caplen;	/* linear bytes from start */
	__u32 wirelen;	/* packet length from start */
	bool l3;
};

/* A device's link type; ARPHRD_ETHER without one. */
static __always_inline __u16 dev_type(struct net_device *dev)
{
	return dev ? BPF_CORE_READ(dev, type) : ARPHRD_ETHER;
}

/* type: skb->dev->type (ARPHRD_ETHER without a device); id: the skb's buffer
 * and offsets, already read by skb_ident(); len: skb->len. */
static __always_inline bool pkt_view(__u16 type, const struct skb_ident *id, __u32 len,
				     struct pkt_view *v)
{
	unsigned char *head = (unsigned char *)id->head;
	unsigned char *data = (unsigned char *)id->data;
	__u16 mac = id->mac;
	__u16 nh = id->nh;
	__u32 tail = id->tail;
	__u8 first = 0;

	if (!head)
		return false;
	v->head = head;
	if (type == ARPHRD_ETHER && mac != MAC_UNSET && (nh == MAC_UNSET || mac < nh)) {
		v->start = head + mac;
		v->l3 = false;
	} else if (nh != MAC_UNSET && (head + nh >= data || (mac != MAC_UNSET && mac <= nh))) {
		/* At the network header; also once the stack has pulled past
		 * it, for a packet received with a link header before it (or
		 * reset at it: TUN, IP-in-IP and GRE decapsulation), whose
		 * offsets are its own: at a free after the protocol handled
		 * it, the view was the transport header taken for a link
		 * header, another fingerprint, and the free another packet's. */
		v->start = head + nh;
		v->l3 = true;
	} else {
		/* No header offsets yet: guess from the first nibble. */
		v->start = data;
		bpf_probe_read_kernel(&first, 1, data);
		v->l3 = (first >> 4) == 4 || (first >> 4) == 6;
	}
	if (head + tail <= v->start)
		return false;
	v->caplen = head + tail - v->start;
	v->wirelen = len + (__u32)(data - v->start);
	return true;
}

/* The packet's netns: its device's, else its socket's, else the socket
 * the tracepoint names. */
static __always_inline __u32 skb_netns(struct sk_buff *skb, struct net_device *dev,
				       struct sock *arg_sk)
{
	struct sock *sk;

	if (dev)
		return BPF_CORE_READ(dev, nd_net.net, ns.inum);
	sk = BPF_CORE_READ(skb, sk);
	if (!sk)
		sk = arg_sk;
	if (sk)
		return BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	return 0;
}

/*
 * What stays the same for one packet through forwarding and NAT but differs
 * between packets: IP protocol, length and id (IPv4) or flow label (IPv6),
 * and the TCP sequence number. An skb whose address is tracked but whose
 * fingerprint changed is a new packet in recycled memory (the old one was
 * freed where no tracepoint fires, e.g. a TCP ACK eaten by TCP).
 */
static __always_inline __u64 fingerprint_at(const unsigned char *start, bool l3)
{
	/* Ethernet and 802.1Q, IPv6, and the TCP sequence: one read. */
	__u8 b[18 + 40 + 8] = {}, *h;
	__u32 off = 0, seq = 0, l4;
	__u64 fp;

	if (bpf_probe_read_kernel(b, sizeof(b), start))
		return 0;
	if (!l3)
		off = b[12] == 0x81 && b[13] == 0x00 ? 18 : 14;
	h = b + off;
	if ((h[0] >> 4) == 4) {
		fp = (__u64)h[9] << 48 | (__u64)h[2] << 40 | (__u64)h[3] << 32 |
		     (__u64)h[4] << 24 | (__u64)h[5] << 16 | 4;
		l4 = off + (h[0] & 0xf) * 4;
		if (h[9] != 6)
			return fp;
	} else if ((h[0] >> 4) == 6) {
		fp = (__u64)h[6] << 48 | (__u64)(h[1] & 0xf) << 40 | (__u64)h[2] << 32 |
		     (__u64)h[3] << 24 | (__u64)h[4] << 16 | (__u64)h[5] << 8 | 6;
		l4 = off + 40;
		if (h[6] != 6)
			return fp;
	} else {
		return 0;
	}
	if (l4 + 8 <= sizeof(b))
		__builtin_memcpy(&seq, b + l4 + 4, 4);
	else
		bpf_probe_read_kernel(&seq, 4, start + l4 + 4);
	return fp ^ ((__u64)seq << 8);
}

static __always_inline __u64 fingerprint(struct pkt_view *v)
{
	return fingerprint_at(v->start, v->l3);
}

#define ETH_P_TEB 0x6558 /* Ethernet in GRE and GENEVE */

/*
 * The fingerprint of the packet a tunnel packet carries, 0 for any other:
 * VXLAN (UDP 4789, 8472), GENEVE (UDP 6081), GRE and gretap, IPIP, SIT and
 * ip6ip6 (IP in IP). Encapsulation pushes the outer headers in front of
 * the inner packet in the same skb, and decapsulation pulls them: the
 * address stays, the headers change, and this tells it is one packet.
 */
/* inner_fingerprint()'s bytes: off the stack, which its callers fill. */
struct fp_scratch {
	__u8 outer[18 + 40];
	__u8 tunnel[16];
	__u8 inner[40 + 8];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fp_scratch);
} fp_scratch SEC(".maps");

static __noinline __u64 inner_fingerprint(__u64 start, __u32 l3)
{
	__u32 zero = 0, off = 0, l4, inner, eth = 0, seq = 0;
	struct fp_scratch *s = bpf_map_lookup_elem(&fp_scratch, &zero);
	__u8 *h, *t, *i, proto;
	__u16 type;
	__u64 fp;

	if (!s || bpf_probe_read_kernel(s->outer, sizeof(s->outer), (void *)start))
		return 0;
	if (!l3)
		off = s->outer[12] == 0x81 && s->outer[13] == 0x00 ? 18 : 14;
	h = s->outer + off;
	if ((h[0] >> 4) == 4 && (h[0] & 0xf) == 5) {
		proto = h[9];
		l4 = off + 20;
	} else if ((h[0] >> 4) == 6) {
		proto = h[6];
		l4 = off + 40;
	} else {
		return 0;
	}
	t = s->tunnel;
	if (proto == 4 || proto == 41) {
		inner = l4;
	} else if (bpf_probe_read_kernel(t, sizeof(s->tunnel), (void *)(start + l4))) {
		return 0;
	} else if (proto == 17) {
		type = (__u16)t[2] << 8 | t[3];
		if (type == 4789 || type == 8472) {
			inner = l4 + 16;
			eth = 1;
		} else if (type == 6081) {
			type = (__u16)t[10] << 8 | t[11];
			inner = l4 + 16 + (t[8] & 0x3f) * 4;
			eth = type == ETH_P_TEB;
			if (!eth && type != ETH_P_IP && type != ETH_P_IPV6)
				return 0;
		} else {
			return 0;
		}
	} else if (proto == 47) {
		type = (__u16)t[2] << 8 | t[3];
		inner = l4 + 4 + (t[0] & 0x80 ? 4 : 0) + (t[0] & 0x20 ? 4 : 0) +
			(t[0] & 0x10 ? 4 : 0);
		eth = type == ETH_P_TEB;
		if (!eth && type != ETH_P_IP && type != ETH_P_IPV6)
			return 0;
	} else {
		return 0;
	}
	if (eth)
		inner += 14;
	/* fingerprint() of the inner packet, from its network header. */
	i = s->inner;
	if (bpf_probe_read_kernel(i, sizeof(s->inner), (void *)(start + inner)))
		return 0;
	if ((i[0] >> 4) == 4) {
		fp = (__u64)i[9] << 48 | (__u64)i[2] << 40 | (__u64)i[3] << 32 |
		     (__u64)i[4] << 24 | (__u64)i[5] << 16 | 4;
		if (i[9] != 6)
			return fp;
		l4 = (i[0] & 0xf) * 4;
	} else if ((i[0] >> 4) == 6) {
		fp = (__u64)i[6] << 48 | (__u64)(i[1] & 0xf) << 40 | (__u64)i[2] << 32 |
		     (__u64)i[3] << 24 | (__u64)i[4] << 16 | (__u64)i[5] << 8 | 6;
		if (i[6] != 6)
			return fp;
		l4 = 40;
	} else {
		return 0;
	}
	bpf_probe_read_kernel(&seq, 4, (void *)(start + inner + l4 + 4));
	return fp ^ ((__u64)seq << 8);
}

/* The bits of an IPv4 fingerprint that a datagram's fragments share with
 * it: version, protocol and IP id (not the length). */
#define FP_DATAGRAM 0x00ff0000ffff00ffULL

/*
 * Whether the headers a site sees are still those of tracked packet `t`:
 * its fingerprint, or a tunnel's outer headers now around it (encapsulated
 * in the same skb), or the inner packet of the tunnel packet it was
 * (decapsulated). The fingerprints follow.
 *
 * A fragment's skb that completes its datagram goes on as the datagram
 * (reassembly gives it the first fragment's headers and the whole length):
 * the same IPv4 id and protocol. Another id at its address is another
 * packet: fragments freed by reassembly fire no tracepoint, and the next
 * datagram's fragments come back at their addresses (a journey took the
 * next datagram's fragments in, under load).
 */
static __always_inline bool same_packet(struct track *t, struct pkt_view *v)
{
	__u64 fp = fingerprint(v), inner;

	if (fp == t->fp)
		return true;
	if (t->frag && ((t->fp & 0xff) != 4 || !((fp ^ t->fp) & FP_DATAGRAM)))
		return true;
	inner = inner_fingerprint((__u64)v->start, v->l3);
	if ((t->inner_fp && fp == t->inner_fp) || (inner && inner == t->fp)) {
		t->fp = fp;
		t->inner_fp = inner;
		return true;
	}
	return false;
}

/*
 * A netlink message (no device, no protocol, a netlink socket): never a
 * network packet. nftables tracing sends one per traced packet and chain,
 * to every listener: without this each ran the filter.
 */
static __always_inline bool is_netlink(struct sk_buff *skb, struct net_device *dev, __u16 proto)
{
	struct sock *sk;

	if (dev || proto)
		return false;
	sk = BPF_CORE_READ(skb, sk);
	return sk && BPF_CORE_READ(sk, __sk_common.skc_family) == AF_NETLINK;
}

/* Whether the view starts with headers the filter can judge for good. */
static __always_inline bool well_formed(struct filter_scratch *s, bool l3, __u64 caplen)
{
	__u16 ethertype;

	if (caplen < 20)
		return false;
	if (l3)
		return (s->pkt[0] >> 4) == 4 || (s->pkt[0] >> 4) == 6;
	ethertype = (s->pkt[12] << 8) | s->pkt[13];
	return ethertype == 0x0800 || ethertype == 0x86dd || ethertype == 0x0806 ||
	       ethertype == 0x8100 || ethertype == 0x88a8;
}

/* The bytes the filter is given of a view with caplen linear bytes: only
 * what it reads (34 for "ip host X"), at least what well_formed() reads. */
static __always_inline __u64 filter_len(__u64 caplen)
{
	if (caplen > cfg.filter_bytes && cfg.filter_bytes >= 20)
		caplen = cfg.filter_bytes;
	if (caplen > FILTER_PKT_MAX)
		caplen = FILTER_PKT_MAX;
	return caplen;
}

/*
 * First half of the selection of an untracked packet: is it where -i,
 * --netns and --mark look; if so, copy what the filter reads into the
 * per-CPU scratch. Returns the bytes copied, 0 for not here.
 */
static __always_inline __u64 prepare_filter(struct sk_buff *skb, struct net_device *dev,
					    struct pkt_view *v)
{
	struct filter_scratch *s;
	__u32 zero = 0;
	__u64 caplen;

	if (cfg.ifindex && (!dev || BPF_CORE_READ(dev, ifindex) != cfg.ifindex))
		return 0;
	if (cfg.netns && skb_netns(skb, dev, NULL) != cfg.netns)
		return 0;
	if (cfg.mark_mask && (BPF_CORE_READ(skb, mark) & cfg.mark_mask) != cfg.mark)
		return 0;

	s = bpf_map_lookup_elem(&scratch, &zero);
	if (!s)
		return 0;
	caplen = filter_len(v->caplen);
	if (!caplen || bpf_probe_read_kernel(s->pkt, caplen, v->start))
		return 0;
	s->wirelen = v->wirelen;
	return caplen;
}

/* The word of a packet turned down by skb (see rejected). */
static __always_inline __u64 skb_word(__u64 skb, struct skb_ident *id)
{
	return mix(mix(mix(mix(0x736b62, skb), id->head), id->data), id->tail) | 1;
}

/* Whether slot holds want; a free clears it (the address will be another
 * packet's). */
static __always_inline bool reject_hit(__u64 addr, __u64 want, __u8 role)
{
	__u32 slot = reject_slot(addr);
	__u64 *w = bpf_map_lookup_elem(&rejected, &slot);

	if (!w || *w != want)
		return false;
	if (role == ROLE_FREE)
		*w = 0;
	return true;
}

static __always_inline void reject_put(__u64 addr, __u64 word)
{
	__u32 slot = reject_slot(addr);
	__u64 *w = bpf_map_lookup_elem(&rejected, &slot);

	if (w)
		*w = word;
}

/* Whether this skb is a packet the filter already turned down. */
static __always_inline bool known_rejected(__u64 skb, struct skb_ident *id, __u8 role)
{
	return reject_hit(skb, skb_word(skb, id), role);
}

/*
 * The packet's key in rejected: a digest of PKT_KEY_LEN bytes from its
 * network header, TTL/hop limit and IPv4 checksum left out; 0 without an IP
 * network header.
 */
static __always_inline __u64 key_digest(__u64 *w)
{
	__u8 *b = (__u8 *)w;
	__u64 h = 0x9e3779b97f4a7c15ULL;
	int i;

	if ((b[0] >> 4) == 4)
		w[1] &= ~0xffff00ffULL; /* bytes 8 (TTL), 10 and 11 (checksum) */
	else if ((b[0] >> 4) == 6)
		w[0] &= ~(0xffULL << 56); /* byte 7 (hop limit) */
	else
		return 0;
	for (i = 0; i < PKT_KEY_LEN / 8; i++)
		h = (h ^ w[i]) * 0x100000001b3ULL;
	return (h ^ (h >> 29)) | 1;
}

/* Whether there is a network header to digest (0: never set, or no
 * headroom; ~0: unset, on kernels that mark it). */
static __always_inline bool has_nh(__u16 nh)
{
	return nh && nh != (__u16)~0U;
}

static __always_inline __u64 pkt_key(struct skb_ident *id)
{
	__u64 w[PKT_KEY_LEN / 8] = {};

	if (!has_nh(id->nh))
		return 0;
#ifndef PKTPATH_RAW_TP
	/* Plain loads the verifier guards where it can (6.2): the helper call
	 * cost as much as the rest of a start site's check. */
	if (bpf_ksym_exists(bpf_rdonly_cast)) {
		read_loads(w, id->head + id->nh, PKT_KEY_LEN / 16);
		return key_digest(w);
	}
#endif
	if (bpf_probe_read_kernel(w, sizeof(w), (void *)id->head + id->nh))
		return 0;
	return key_digest(w);
}

/* The word of a packet turned down by packet (see rejected). */
static __always_inline __u64 pkt_word(__u64 head, __u64 key)
{
	return mix(mix(0x706b74, head), key) | 1;
}

/* The byte mask of the 8 bytes at off that lie before n. */
static __always_inline __u64 valid_bytes(__u32 n, __u32 off)
{
	if (off >= n)
		return 0;
	if (n - off >= 8)
		return ~0ULL;
	return (1ULL << (8 * (n - off))) - 1;
}

/*
 * The word of a packet turned down by the bytes the filter read (rs, see
 * struct read_set), in two halves: flow_abs() over the view's first 64
 * bytes (w), flow_word() over the 32 at xoff (= X, x); n: how many the
 * filter was given, bytes past it count as 0. Content-addressed: every
 * packet with the same bytes has it (all of a flow's, for a filter on
 * addresses, ports and protocols), wherever its buffer; a rewritten packet
 * (NAT) has another.
 */
static __always_inline __u64 flow_abs(const volatile struct read_set *rs, const __u64 *w, __u32 n,
				      __u32 set)
{
	__u64 h = 0x666c6f77ULL ^ set;
	int i;

	/* Only the words the filter reads: with a read set the verifier
	 * knows (flow_at()), the others leave no code. */
	for (i = 0; i < 8; i++)
		if (rs->abs[i])
			h = (h ^ (w[i] & rs->abs[i] & valid_bytes(n, 8 * i))) * 0x100000001b3ULL;
	return h;
}

static __always_inline __u64 flow_word(__u64 h, const volatile struct read_set *rs,
				       const __u64 *x, __u32 xoff, __u32 n)
{
	int i;

	for (i = 0; i < 4; i++)
		if (rs->ind[i])
			h = (h ^ (x[i] & rs->ind[i] & valid_bytes(n, xoff + 8 * i))) *
			    0x100000001b3ULL;
	h = (h ^ n) * 0x100000001b3ULL;
	return (h ^ (h >> 29)) | 1;
}

/*
 * Which of the filter's read sets (cfg.reads) a view's packet is in: by
 * its ethertype (Ethernet) or IP version, as the filter tells them apart
 * first (cbpf::classes); w: its first bytes, n: how many it has.
 */
static __always_inline __u32 read_set_of(bool l3, const __u64 *w, __u32 n)
{
	const __u8 *b = (const __u8 *)w;
	__u64 i;

	if (l3) {
		__u8 v = n >= 1 ? b[0] >> 4 : 0;

		i = v == 4 ? 3 : v == 6 ? 4 : 5;
	} else {
		__u16 et = n >= 14 ? (__u16)b[12] << 8 | b[13] : 0;

		i = et == 0x0800 ? 0 : et == 0x86dd ? 1 : 2;
	}
	/* Bounds the verifier sees: the compiler would drop a plain check. */
	asm volatile("%0 &= 7" : "+r"(i));
	return i > 5 ? 5 : i;
}

/* X of the read set: 4 x the low nibble of the header-length byte. */
static __always_inline __u32 flow_xoff(const volatile struct read_set *rs, const __u64 *w, __u32 n)
{
	__u32 m = rs->msh & 63;

	return m < n ? 4 * (((const __u8 *)w)[m] & 0xf) : 0;
}

#ifndef PKTPATH_RAW_TP
/*
 * flow_abs() and flow_word() of the packet at start, read from kernel
 * memory into w (8 words; the first 16 bytes already there), with read set
 * `set` a constant: only the 16-byte chunks the filter reads are loaded.
 */
static __always_inline __u64 flow_at(const __u32 set, __u64 start, __u64 *w, __u32 n)
{
	const volatile struct read_set *rs = &cfg.reads[set];
	__u32 c, xoff;
	__u64 h;

	if (!rs->on)
		return 0;
	for (c = 1; c < 4; c++)
		if (rs->abs[2 * c] | rs->abs[2 * c + 1])
			read_loads(w + 2 * c, start + 16 * c, 1);
	h = flow_abs(rs, w, n, set);
	if (!(rs->ind[0] | rs->ind[1] | rs->ind[2] | rs->ind[3]))
		return flow_word(h, rs, w, 0, n);
	xoff = flow_xoff(rs, w, n);
	read_loads(w, start + xoff, 2); /* x, in w's room */
	return flow_word(h, rs, w, xoff, n);
}

/*
 * The word by its read set of the packet whose first 64 bytes w holds (n
 * valid), the set picked at run time by its class. The 32 bytes at X are
 * loaded from kernel memory at start + X into w once its first half is
 * hashed, or, when `whole` (w is a copy of the whole packet), read in w
 * itself. 0: the set is off.
 */
static __always_inline __u64 flow_in(__u64 *w, __u32 n, bool l3, __u64 start, const bool whole)
{
	__u32 set = read_set_of(l3, w, n), xoff;
	const volatile struct read_set *rs = &cfg.reads[set];
	__u64 h;

	if (!rs->on)
		return 0;
	xoff = flow_xoff(rs, w, n);
	h = flow_abs(rs, w, n, set);
	if (whole)
		return flow_word(h, rs, (__u64 *)((__u8 *)w + xoff), xoff, n);
	read_loads(w, start + xoff, 2);
	return flow_word(h, rs, w, xoff, n);
}

/*
 * flow_of() without the dispatch: every chunk loaded, the read set's masks
 * tested at run time. For the rarer sites that ask (frees, function
 * sites): every program carries this code, and a copy of flow_at() for
 * each set would cost verifier time in each.
 */
static __always_inline __u64 flow_any(struct pkt_view *v, __u64 *w)
{
	read_loads(w, (__u64)v->start, 4);
	return flow_in(w, filter_len(v->caplen), v->l3, (__u64)v->start, false);
}

/*
 * The word of the packet in view v by the bytes the filter reads (0: its
 * read set is off), w: room for 8 words. Its class picks the read set
 * (read_set_of()); IPv4's (Ethernet and IP) are dispatched to constants so
 * that flow_at() loads and hashes only what the set needs; the others,
 * rarer, take flow_any() (each copy is code in every program).
 */
static __always_inline __u64 flow_of(struct pkt_view *v, __u64 *w)
{
	__u32 n = filter_len(v->caplen);

	read_loads(w, (__u64)v->start, 1);
	switch (read_set_of(v->l3, w, n)) {
	case 0: return flow_at(0, (__u64)v->start, w, n);
	case 3: return flow_at(3, (__u64)v->start, w, n);
	default: return flow_any(v, w);
	}
}
#endif


/* Whether this packet (in any skb of it) is one the filter turned down. */
static __always_inline bool known_rejected_pkt(__u64 head, __u64 key, __u8 role)
{
	return reject_hit(head, pkt_word(head, key), role);
}

/* This CPU's site saw no followed packet (set_current() says otherwise). */
static __always_inline void forget_seen(void)
{
	__u32 zero = 0;
	struct cpu_seen *seen = bpf_map_lookup_elem(&cpu_seen, &zero);

	/* Written only when set: most runs leave the line clean. */
	if (seen && seen->skb)
		seen->skb = 0;
}

/* Record the addresses of the packet this CPU handles now. */
static __always_inline void set_current(struct event *e)
{
	__u32 zero = 0, off = 0;
	struct current *c = bpf_map_lookup_elem(&cpu_current, &zero);
	struct cpu_seen *seen = bpf_map_lookup_elem(&cpu_seen, &zero);
	__u16 proto;

	if (seen)
		seen->skb = e->skb;
	if (!c)
		return;
	if (c->skb != e->skb) {
		c->gw4 = 0;
		__builtin_memset(c->gw6, 0, sizeof(c->gw6));
	}
	c->skb = e->skb;
	c->journey = e->journey;
	c->ts = e->ts;
	c->ifindex = e->ifindex;
	c->netns = e->netns;
	if (!(e->flags & EVENT_F_L3))
		off = 14;
	proto = bpf_ntohs(e->protocol);
	if (proto == ETH_P_IP && e->data_len >= off + 20) {
		__builtin_memcpy(&c->saddr4, &e->data[off + 12], 4);
		__builtin_memcpy(&c->daddr4, &e->data[off + 16], 4);
	} else if (proto == ETH_P_IPV6 && e->data_len >= off + 40) {
		__builtin_memcpy(c->saddr6, &e->data[off + 8], 16);
		__builtin_memcpy(c->daddr6, &e->data[off + 24], 16);
	}
}

/* Emits a pending event (made just before this new packet existed) for it. */
static __always_inline void flush_one(struct event *p, struct event *first)
{
	p->journey = first->journey;
	p->skb = first->skb;
	if (bpf_ringbuf_output(&events, p, sizeof(*p), rb_flags()))
		count(CNT_LOST);
	p->ts = 0;
}

/*
 * Output route lookups and next-hop resolution happen before the skb of a
 * locally generated packet reaches its first tracepoint. They were kept per
 * CPU; they are this packet's when recent, in its netns, and about its
 * destination (or the gateway of that route).
 */
static __always_inline bool same16(const __u8 *a, const __u8 *b)
{
	__u64 a0, a1, b0, b1;

	__builtin_memcpy(&a0, a, 8);
	__builtin_memcpy(&a1, a + 8, 8);
	__builtin_memcpy(&b0, b, 8);
	__builtin_memcpy(&b1, b + 8, 8);
	return a0 == b0 && a1 == b1;
}

/* flush_pending() for an IPv6 packet to daddr. */
static __always_inline void flush_pending6(struct event *first, struct event *fib,
					   struct event *neigh, const __u8 *daddr)
{
	__u8 gw[16] = {};

	if (fib && fib->ts && fib->kind == EVENT_FIB6 && first->ts - fib->ts <= CORRELATE_NS &&
	    fib->netns == first->netns && same16(fib->data, daddr)) {
		__builtin_memcpy(gw, &fib->data[32], 16);
		flush_one(fib, first);
	}
	if (neigh && neigh->ts && neigh->args[2] == AF_INET6 &&
	    first->ts - neigh->ts <= FIB_INPUT_NS && neigh->netns == first->netns &&
	    (same16(neigh->data, daddr) || same16(neigh->data, gw)))
		flush_one(neigh, first);
}

static __always_inline void flush_pending(struct event *first)
{
	__u32 zero = 0, off = (first->flags & EVENT_F_L3) ? 0 : 14;
	struct event *fib = bpf_map_lookup_elem(&pending_fib, &zero);
	struct event *neigh = bpf_map_lookup_elem(&pending_neigh, &zero);
	__u32 daddr, gw = 0, key;

	if (bpf_ntohs(first->protocol) == ETH_P_IPV6 && first->data_len >= off + 40) {
		flush_pending6(first, fib, neigh, &first->data[off + 24]);
		return;
	}
	if (bpf_ntohs(first->protocol) != ETH_P_IP || first->data_len < off + 20)
		return;
	__builtin_memcpy(&daddr, &first->data[off + 16], 4);
	if (fib && fib->ts && fib->kind == EVENT_FIB4 && first->ts - fib->ts <= CORRELATE_NS &&
	    fib->netns == first->netns && (__u32)fib->args[2] == daddr) {
		gw = fib->args[4];
		flush_one(fib, first);
	}
	if (neigh && neigh->ts && neigh->args[2] != AF_INET6 &&
	    first->ts - neigh->ts <= CORRELATE_NS && neigh->netns == first->netns) {
		__builtin_memcpy(&key, neigh->data, 4);
		if (key == daddr || (gw && key == gw))
			flush_one(neigh, first);
	}
}

/* Conntrack state and tuples, and the VLAN tag held outside the data. */
static __always_inline void read_ct_vlan(struct event *e, const struct skb_meta *m)
{
	unsigned long nfct = m->nfct;
	struct nf_conn *ct;

	e->ct_status = 0;
	e->ct_zone = 0;
	e->ct_info = 0;
	e->pad2 = 0;
	e->vlan_tci = 0;
	e->vlan_proto = 0;
	__builtin_memset(e->ct_orig, 0, sizeof(e->ct_orig));
	__builtin_memset(e->ct_reply, 0, sizeof(e->ct_reply));
	e->vlan_proto = m->vlan_proto;
	e->vlan_tci = m->vlan_tci;
	if (!nfct)
		return;
	e->ct_info = (nfct & 7) + 1;
	ct = (struct nf_conn *)(nfct & ~7UL);
	if (!ct)
		return;
	e->ct_status = BPF_CORE_READ(ct, status);
	if (bpf_core_field_exists(ct->zone))
		e->ct_zone = BPF_CORE_READ(ct, zone.id);
	bpf_core_read(e->ct_orig, sizeof(e->ct_orig), &ct->tuplehash[0].tuple);
	bpf_core_read(e->ct_reply, sizeof(e->ct_reply), &ct->tuplehash[1].tuple);
}

/*
 * One observation of a packet at a site.
 *
 * The shared work is in global functions (obs_begin, obs_select,
 * obs_emit): the verifier checks each once, on its own, instead of every
 * path through all of them inlined into every site program. Inlined, a
 * site program cost ~72,000 verified instructions (~90 ms to load); the
 * fentry backend loads one program per kernel function, so this is what
 * makes ~2,000 functions attach in seconds. Only the filter stays in the
 * site program: it is spliced into each program's own instructions.
 *
 * Kernel pointers travel as u64 (global functions take scalars or
 * pointers to memory); they are only ever read with probe_read.
 */
struct obs {
	/* from the site */
	__u64 skb;
	__u64 dev;   /* the site's own struct net_device *, or 0 */
	__u64 sk;    /* a struct sock * the site names, or 0 */
	__u64 qdisc; /* struct Qdisc * of qdisc sites, or 0 */
	__u64 args[MAX_ARGS];
	__u32 site;
	__u16 kind;
	__u8 role;
	__u8 may_start;
	__u8 consume; /* a free that is not a drop (SLOT_F_CONSUME) */
	/* from obs_begin() to obs_select(): the packet as first read */
	struct skb_ident id;
	struct skb_meta m;
	struct pkt_view v;
	__u64 skb_dev;	/* skb->dev */
	__u64 key;	/* pkt_key(), 0: none */
	__u64 fbytes;	/* bytes in scratch for the filter */
	__u64 flow;	/* flow_word() from turned_down(), 0: none */
	__u8 have_id;
	__u8 pre;	/* PRE_*: what the site program already read */
	__u8 have_key;	/* key is computed */
	__u8 checked;	/* turned_down() said: not followed, not turned down */
	__u16 skb_dev_type; /* skb->dev->type (PRE_SKB) */
	__u8 frag;	/* FRAG_* from frag_join() */
	__u8 pad2;
	__u32 ifindex;	/* of the event's device (PRE_DEV) */
	__u32 netns;	/* of the event's device (PRE_DEV) */
	char devname[16]; /* (PRE_DEV) */
};

/*
 * What a tp_btf site program read itself, with plain loads through the
 * typed pointers the tracepoint hands it, before the shared functions
 * (which see kernel pointers only as numbers, and so read with helpers):
 * the skb's identity and meta, skb->dev (PRE_SKB); the event device's
 * netns, ifindex and name (PRE_DEV).
 */
#define PRE_SKB 1
#define PRE_DEV 2

/* obs_begin() results */
enum {
	OBS_DONE = 0,	/* nothing more to do */
	OBS_FILTER = 1, /* untracked: run the filter on scratch, then obs_select() */
};

/*
 * Reserve, fill and submit the event of an observation in journey
 * `journey`; 0 when emitted.
 */
__noinline int obs_emit(struct obs *o, __u64 journey, __u64 flags, __u64 now)
{
	struct sk_buff *skb;
	struct net_device *dev;
	struct event *e;
	__u64 n;

	if (!o)
		return -1;
	skb = (void *)o->skb;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(CNT_LOST);
		return -1;
	}
	dev = (void *)(o->dev ? o->dev : o->skb_dev);
	e->ts = now;
	e->skb = o->skb;
	e->journey = journey;
	for (n = 0; n < MAX_ARGS; n++)
		e->args[n] = o->args[n];
	if (o->pre & PRE_DEV) {
		e->netns = o->netns;
		e->ifindex = o->ifindex;
		__builtin_memcpy(e->dev, o->devname, sizeof(o->devname));
	} else {
		e->netns = skb_netns(skb, dev, (void *)o->sk);
		e->ifindex = dev ? BPF_CORE_READ(dev, ifindex) : 0;
		if (dev)
			BPF_CORE_READ_STR_INTO(&e->dev, dev, name);
		else
			e->dev[0] = 0;
	}
	e->len = o->m.len;
	e->mark = o->m.mark;
	e->site = o->site;
	e->kind = o->kind;
	e->cpu = bpf_get_smp_processor_id();
	e->protocol = o->have_id ? o->id.proto : BPF_CORE_READ(skb, protocol);
	e->qdisc_handle = 0;
	e->qdisc_kind[0] = 0;
	if (o->qdisc) {
		struct Qdisc *q = (void *)o->qdisc;

		e->qdisc_handle = BPF_CORE_READ(q, handle);
		BPF_CORE_READ_STR_INTO(&e->qdisc_kind, q, ops, id);
	}
	e->data_len = 0;
	if (o->v.caplen) {
		n = o->v.caplen > EVENT_PKT_MAX ? EVENT_PKT_MAX : o->v.caplen;
		if (!bpf_probe_read_kernel(e->data, n, o->v.start))
			e->data_len = n;
	}
	if (o->v.l3)
		flags |= EVENT_F_L3;
	e->flags = flags;
	e->pad = 0;
	read_ct_vlan(e, &o->m);
	if ((flags & EVENT_F_FIRST) && cfg.fib_correlate)
		flush_pending(e);
	set_current(e);
	bpf_ringbuf_submit(e, rb_flags());
	count(CNT_EVENTS);
	return 0;
}

/* After the event: what the site means for the packet's tracking. */
static __always_inline void obs_end(struct obs *o, struct track *t)
{
	__u64 key = o->skb;

	if (o->role == ROLE_FREE) {
		__u32 zero = 0;
		struct current *c = bpf_map_lookup_elem(&cpu_current, &zero);
		bool func = o->kind == EVENT_FUNC || o->kind == EVENT_FUNC_RET;

		/*
		 * Not once freed: a later route lookup on this CPU is another
		 * packet's. But a fragment consumed by reassembly hands its
		 * place to the datagram, which goes on in another fragment's
		 * skb with no tracepoint before its socket (sk_data_ready).
		 */
		if (c && c->skb == key && !(t && t->frag && o->consume))
			c->skb = 0;
		/*
		 * With function sites attached, the skb still goes through the
		 * release functions after the free tracepoint: keep it known
		 * (so it is not selected anew) until a function frees it.
		 */
		if (t && cfg.funcs_active && t->state != ROLE_FREED && !func)
			t->state = ROLE_FREED;
		else if (t)
			track_del(key);
	} else if (o->role == ROLE_DELIVER && t) {
		t->state = ROLE_DELIVER;
	}
}

/*
 * A fragment freed by reassembly: its skb->dev is its place in the queue
 * (struct rb_node shares it). Its namespace is that of the fragment this
 * CPU handled before, which completed the datagram; no device.
 */
static __always_inline void frag_freed(struct obs *o)
{
	struct current *c;
	__u32 zero = 0;

	c = bpf_map_lookup_elem(&cpu_current, &zero);
	o->netns = c ? c->netns : 0;
	o->ifindex = 0;
	o->devname[0] = 0;
	o->pre |= PRE_DEV;
}

/*
 * Whether the bytes the filter reads of this packet were turned down
 * already (see turned_down()), for sites that did not ask before: frees,
 * function sites. Read into scratch, which the filter's copy overwrites
 * next (the stack has no room left here). Sets o->flow for obs_select().
 */
static __always_inline bool flow_seen(struct obs *o)
{
#ifndef PKTPATH_RAW_TP
	struct filter_scratch *s;
	__u32 zero = 0;

	if (!bpf_ksym_exists(bpf_rdonly_cast))
		return false;
	s = bpf_map_lookup_elem(&scratch, &zero);
	if (!s)
		return false;
	o->flow = flow_any(&o->v, (__u64 *)s->pkt);
	return o->flow && reject_hit(o->flow, o->flow, ROLE_PASS);
#else
	return false;
#endif
}

/*
 * Whether this skb belongs to a journey. Tracked: emit its event (OBS_DONE).
 * Unselected and known: OBS_DONE at once (one read, one lookup). Unknown:
 * the packet's bytes are in scratch, OBS_FILTER.
 */
__noinline int obs_begin(struct obs *o)
{
	struct sk_buff *skb;
	struct net_device *skb_dev;
	__u64 now, key;
	struct track *t;

	if (!o || !o->skb)
		return OBS_DONE;
	skb = (void *)o->skb;
	key = o->skb;
	forget_seen(); /* set again by set_current() if followed */
	/*
	 * Where no journey starts, a packet not followed ends here, with one
	 * lookup. Frees go on: a free clears the packet's rejected slot.
	 */
	if (o->checked)
		t = NULL;
	else
		t = followed(key);
	if (!t && !o->may_start && o->role != ROLE_FREE)
		return OBS_DONE;
	if (!(o->pre & PRE_SKB))
		o->have_id = skb_ident(skb, &o->id);
	/* Unselected packets end here: one more read, one array load (see
	 * rejected). A followed one has no need: its stale check tells. */
	if (!t && !o->checked) {
		if (!o->have_key)
			o->key = o->have_id ? pkt_key(&o->id) : 0;
		o->have_key = 1;
		if (o->key) {
			if (known_rejected_pkt(o->id.head, o->key, o->role))
				return OBS_DONE;
		} else if (o->have_id && known_rejected(key, &o->id, o->role)) {
			return OBS_DONE;
		}
	}
	/* Not followed and cannot start here (frees, headerless sends...):
	 * nothing more to read. */
	if (!t && !o->may_start)
		return OBS_DONE;
	if (o->pre & PRE_SKB) {
		skb_dev = (void *)o->skb_dev;
	} else {
		skb_dev = BPF_CORE_READ(skb, dev);
		o->skb_dev = (__u64)skb_dev;
		o->skb_dev_type = dev_type(skb_dev);
		skb_meta(skb, &o->m);
	}
	if (!o->have_id || !pkt_view(o->skb_dev_type, &o->id, o->m.len, &o->v))
		o->v.caplen = 0;
	/*
	 * Without function sites, frees that fire no tracepoint go unseen and
	 * the address may come back as another packet: the fingerprint tells.
	 * With them, every free is seen, and headers are still being written in
	 * the early functions, so it is not checked.
	 */
	/*
	 * A free reads no headers (often there are none left to read): a
	 * datagram freed where no tracepoint fires leaves its entry to the
	 * next skb allocated at its address, often with its buffer too (both
	 * come back from the allocator's per-CPU lists). That skb's header
	 * offsets are its own (a netlink message has none): a consume whose
	 * offsets differ from the packet's last site is another skb's. A drop
	 * is kept unless its buffer differs: a tunnel resets the offsets
	 * before it can drop the inner packet, with no site in between. A
	 * fragment's skb takes the buffer and headers of its datagram's first
	 * fragment when it completes it (reassembly), and goes on as the
	 * datagram: its frees are not checked, and its headers only for the
	 * datagram's IP id (same_packet()).
	 */
	now = t ? bpf_ktime_get_ns() : 0;
	if (t && (now - t->last_ts > cfg.stale_ns ||
		  (!cfg.funcs_active && t->state == ROLE_DELIVER && o->role != ROLE_DELIVER) ||
		  (!cfg.funcs_active && o->v.caplen && t->fp && !same_packet(t, &o->v)) ||
		  (!cfg.funcs_active && o->role == ROLE_FREE && t->head && o->have_id && !t->frag &&
		   (o->id.head != t->head ||
		    (o->consume && (o->id.mac != t->mac || o->id.nh != t->nh)))))) {
		/* The address was freed without us seeing it and reused. */
		track_del(key);
		t = NULL;
		if (!o->have_key) /* for obs_select(), should the filter say no */
			o->key = o->have_id ? pkt_key(&o->id) : 0;
	}
	if (t) {
		o->frag = t->frag;
		if (o->frag && o->role == ROLE_FREE)
			frag_freed(o);
		/* Being released: the journey already ended, no event. */
		if (t->state != ROLE_FREED) {
			t->last_ts = now;
			if (o->have_id) {
				t->head = o->id.head;
				t->mac = o->id.mac;
				t->nh = o->id.nh;
			}
			obs_emit(o, t->journey, 0, now);
		}
		obs_end(o, t);
		return OBS_DONE;
	}
	if (!o->v.caplen || !o->may_start || is_netlink(skb, skb_dev, o->id.proto))
		return OBS_DONE;
	if (!o->checked && flow_seen(o))
		return OBS_DONE;
	o->fbytes = prepare_filter(skb, skb_dev, &o->v);
	return o->fbytes ? OBS_FILTER : OBS_DONE;
}

/* A no by the bytes the filter read too (see turned_down()), from
 * turned_down() or from what scratch holds. */
static __always_inline void flow_put(struct obs *o, struct filter_scratch *s)
{
#ifndef PKTPATH_RAW_TP
	__u64 word = o->flow;

	if (!bpf_ksym_exists(bpf_rdonly_cast))
		return;
	if (!word && s)
		word = flow_in((__u64 *)s->pkt, o->fbytes, o->v.l3, 0, true);
	if (word)
		reject_put(word, word);
#endif
}

/*
 * IP fragments. Only the first fragment of a datagram has its ports, so
 * a filter on them selects that one alone; its datagram (addresses, id,
 * protocol) is noted here with its journey, and the datagram's other
 * fragments join that journey at their first site, as do the fragments a
 * router makes anew after reassembling it (conntrack). Reassembly goes on
 * in one fragment's skb: the others are freed or chained to it, and the
 * journey ends with the datagram. Fragments of one datagram come within
 * milliseconds: a note older than FRAG_NS is another datagram's (the id
 * wraps).
 */
#define FRAG_NS 2000000000ULL
#define FRAG_FIRST 1 /* offset 0, more fragments follow */
#define FRAG_LATER 2

struct frag_key {
	__u64 addrs; /* IPv4: source and destination; IPv6: a hash of them */
	__u32 id;
	__u8 proto;
	__u8 v6;
	__u16 pad;
};

struct frag_note {
	__u64 journey;
	__u64 ts;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, struct frag_key);
	__type(value, struct frag_note);
} frags SEC(".maps");

/* The 8 bytes of scratch at `at`, as they lie. */
static __always_inline __u64 scratch_word(struct filter_scratch *s, __u32 at)
{
	__u64 w;

	__builtin_memcpy(&w, &s->pkt[at], 8);
	return w;
}

/*
 * The datagram of the IP fragment whose bytes scratch holds (n of them),
 * and which fragment: FRAG_*, 0 for a whole packet. IPv6: a fragment
 * header right after the fixed header (the filter is given those bytes,
 * see Filter::new).
 */
static __always_inline __u8 frag_of(struct filter_scratch *s, __u64 n, bool l3,
				    struct frag_key *k)
{
	__u32 off = 0, i;
	__u16 fo;
	__u64 h;

	if (!l3) {
		if (n < 14 || !((s->pkt[12] == 0x08 && s->pkt[13] == 0x00) ||
				(s->pkt[12] == 0x86 && s->pkt[13] == 0xdd)))
			return 0;
		off = 14;
	}
	if (n < off + 20)
		return 0;
	if ((s->pkt[off] >> 4) == 4) {
		fo = (__u16)s->pkt[off + 6] << 8 | s->pkt[off + 7];
		if (!(fo & 0x3fff))
			return 0;
		k->addrs = scratch_word(s, off + 12);
		k->id = (__u16)s->pkt[off + 4] << 8 | s->pkt[off + 5];
		k->proto = s->pkt[off + 9];
		return fo & 0x1fff ? FRAG_LATER : FRAG_FIRST;
	}
	if ((s->pkt[off] >> 4) != 6 || n < off + 48 || s->pkt[off + 6] != 44)
		return 0;
	/* Offset (13 bits), 2 reserved, M: an atomic fragment is whole. */
	fo = (__u16)s->pkt[off + 42] << 8 | s->pkt[off + 43];
	if (!(fo & 0xfff9))
		return 0;
	h = 0xcbf29ce484222325ULL;
	for (i = 0; i < 4; i++)
		h = (h ^ scratch_word(s, off + 8 + 8 * i)) * 0x100000001b3ULL;
	k->addrs = h;
	__builtin_memcpy(&k->id, &s->pkt[off + 44], 4);
	k->proto = s->pkt[off + 40];
	k->v6 = 1;
	return fo >> 3 ? FRAG_LATER : FRAG_FIRST;
}

/*
 * For an untracked packet about to be filtered: the journey it joins as a
 * fragment of a datagram followed, else 0. Sets o->frag.
 */
__noinline __u64 frag_join(struct obs *o)
{
	struct filter_scratch *s;
	struct frag_note *note;
	struct frag_key k = {};
	__u32 zero = 0;
	__u64 now;

	if (!o)
		return 0;
	s = bpf_map_lookup_elem(&scratch, &zero);
	if (!s)
		return 0;
	o->frag = frag_of(s, o->fbytes, o->v.l3, &k);
	if (!o->frag)
		return 0;
	now = bpf_ktime_get_ns();
	note = bpf_map_lookup_elem(&frags, &k);
	if (!note || now - note->ts >= FRAG_NS)
		return 0;
	note->ts = now;
	return note->journey;
}

/*
 * Notes the datagram of fragment o as followed by `journey`; 0: not
 * followed (a first fragment turned down ends the note of an earlier
 * datagram of its id). Not inlined, like obs_join(): the stack of a call
 * chain is 512 bytes before 6.13's private stacks, and obs_select() and
 * obs_emit() hold most of it.
 */
__noinline int frag_note(struct obs *o, __u64 journey)
{
	struct filter_scratch *s;
	struct frag_note note = {};
	struct frag_key k = {};
	__u32 zero = 0;

	if (!o)
		return 0;
	s = bpf_map_lookup_elem(&scratch, &zero);
	if (!s || !frag_of(s, o->fbytes, o->v.l3, &k))
		return 0;
	if (!journey)
		return bpf_map_delete_elem(&frags, &k);
	note.journey = journey;
	note.ts = bpf_ktime_get_ns();
	return bpf_map_update_elem(&frags, &k, &note, BPF_ANY);
}

/*
 * Follows untracked packet o as journey `journey`, or as a new journey
 * (0): its event and its tracking entry. Inlined with a constant journey
 * in each caller: the stack of a call chain is 512 bytes before 6.13's
 * private stacks, and obs_select() and obs_emit() hold most of it.
 */
static __always_inline int obs_start(struct obs *o, const __u64 journey)
{
	struct track nt = {}, *t = NULL;
	__u64 key = o->skb; /* map keys from the stack: 6.1 takes no other memory */

	if (journey) {
		nt.journey = journey;
	} else {
		nt.journey = __sync_fetch_and_add(&next_journey, 1) + 1;
		count(CNT_SELECTED);
		if (o->frag)
			frag_note(o, nt.journey);
	}
	nt.last_ts = bpf_ktime_get_ns();
	nt.frag = !!o->frag;
	nt.fp = fingerprint(&o->v);
	nt.inner_fp = inner_fingerprint((__u64)o->v.start, o->v.l3);
	nt.head = o->have_id ? o->id.head : 0;
	nt.mac = o->id.mac;
	nt.nh = o->id.nh;
	if (o->role != ROLE_FREE) {
		track_put(key, &nt);
		t = bpf_map_lookup_elem(&tracked, &key);
	}
	obs_emit(o, nt.journey, journey ? 0 : EVENT_F_FIRST, nt.last_ts);
	obs_end(o, t);
	return 1;
}

/* A fragment of a datagram followed joins its journey (frag_join()). */
__noinline int obs_join(struct obs *o, __u64 journey)
{
	if (!o || !journey)
		return 0;
	return obs_start(o, journey);
}

/* An untracked packet the filter selected: a new journey. */
__noinline int obs_select(struct obs *o)
{
	if (!o)
		return 0;
	return obs_start(o, 0);
}

/* An untracked packet the filter turned down: remembered (see rejected). */
__noinline int obs_reject(struct obs *o)
{
	struct filter_scratch *s;
	__u32 zero = 0;
	__u64 key, head, digest;

	if (!o)
		return 0;
	/* A fragment is judged anew at each site: a later one of a selected
	 * datagram shares the bytes the filter reads with those of others
	 * (no ports), and joins it (frag_join()). */
	if (o->frag) {
		if (o->frag == FRAG_FIRST)
			frag_note(o, 0);
		return 0;
	}
	/* Map keys and values from the stack: 6.1 takes no other memory. */
	key = o->skb;
	head = o->id.head;
	digest = o->key;
	s = bpf_map_lookup_elem(&scratch, &zero);
	/*
	 * Well-formed headers turned down: by packet (all its skbs). Not yet
	 * a network packet (headers unwritten): by skb, until its layout
	 * changes. Not a packet being freed: it is not seen again (its flow
	 * may be).
	 */
	if (o->role != ROLE_FREE) {
		if (s && digest && well_formed(s, o->v.l3, o->fbytes))
			reject_put(head, pkt_word(head, digest));
		else if (o->have_id)
			reject_put(key, skb_word(key, &o->id));
	}
	flow_put(o, s);
	return 0;
}

/* One observation: the shared halves, and the filter between them. */
static __always_inline void observe(struct obs *o)
{
	struct filter_scratch *s;
	__u32 zero = 0;
	__u64 n, join;
	int yes;

	if (obs_begin(o) != OBS_FILTER)
		return;
	/* Freed and not followed: a copy of a fragment (reassembly clones
	 * the one that completes a datagram), freed with the datagram. */
	join = frag_join(o);
	if (join) {
		if (o->role != ROLE_FREE)
			obs_join(o, join);
		return;
	}
	s = bpf_map_lookup_elem(&scratch, &zero);
	if (!s)
		return;
	n = o->fbytes;
	if (n > FILTER_PKT_MAX)
		n = FILTER_PKT_MAX;
	if (o->v.l3)
		yes = filter_l3(s, n) != 0;
	else
		yes = filter_l2(s, n) != 0;
	count(CNT_FILTERED);
	if (yes)
		obs_select(o);
	else
		obs_reject(o);
}

#ifndef PKTPATH_RAW_TP
/*
 * tp_btf: the reads of obs_begin() and obs_emit() that plain loads can do
 * here (see PRE_SKB), each a helper call there. Faults read as 0. The
 * device's only with dev_too: not for a packet on its way to the filter
 * (most are turned down; the first event of one selected reads them with
 * helpers).
 */
static __always_inline void pre_read(struct obs *o, struct sk_buff *skb,
				     struct net_device *site_dev, struct sock *site_sk, __u8 role,
				     bool dev_too)
{
	struct net_device *sdev, *dev;

	/*
	 * Not where the packet is freed or handed to a socket: there skb->dev
	 * may be something else (UDP keeps its dev_scratch in it), and loads
	 * through it fault, at ~2 us each (consume_skb of UDP, armed: 160 ns
	 * -> 2.5 us per run). Those sites read with helpers, only as needed.
	 */
	if (!skb || role != ROLE_PASS) /* no skb: tcp_send_reset may pass none */
		return;
	sdev = skb->dev;
	o->id.head = (__u64)skb->head;
	o->id.data = (__u64)skb->data;
	o->id.tail = skb->tail;
	o->id.nh = skb->network_header;
	o->id.mac = skb->mac_header;
	o->id.proto = skb->protocol;
	o->have_id = o->id.head != 0;
	if (bpf_core_field_exists(skb->_nfct))
		o->m.nfct = skb->_nfct;
	o->m.len = skb->len;
	o->m.mark = skb->mark;
	o->m.vlan_proto = skb->vlan_proto;
	o->m.vlan_tci = skb->vlan_tci;
	o->skb_dev = (__u64)sdev;
	o->skb_dev_type = sdev ? sdev->type : ARPHRD_ETHER;
	o->pre = PRE_SKB;
	if (!dev_too)
		return;
	dev = site_dev ? site_dev : sdev;
	if (!dev) {
		/* The socket's netns (skb_netns()), no device. */
		struct sock *sk = skb->sk ? skb->sk : site_sk;

		if (!sk)
			return;
		o->netns = sk->__sk_common.skc_net.net->ns.inum;
		o->ifindex = 0;
		o->devname[0] = 0;
		o->pre |= PRE_DEV;
		return;
	}
	o->netns = dev->nd_net.net->ns.inum;
	o->ifindex = dev->ifindex;
	__builtin_memcpy(o->devname, dev->name, sizeof(o->devname));
	o->devname[sizeof(o->devname) - 1] = 0;
	o->pre |= PRE_DEV;
}
#endif

/* A typed pointer (tp_btf) as the scalar it is read as. */
struct skb_arg {
	__u64 skb;
};

/* Whether skb is surely not followed: a continuation site has no more to do. */
__noinline int not_followed(struct skb_arg *a)
{
	__u64 key;

	if (!a)
		return 0;
	key = a->skb;
	if (followed(key))
		return 0;
	forget_seen();
	return 1;
}

#ifndef PKTPATH_RAW_TP
/* An skb at a start site, its identity read with plain loads. */
struct start_arg {
	__u64 skb;
	struct skb_ident id;
	__u64 key; /* out: pkt_key(), when the answer is 0 */
	__u64 checked; /* out: not followed, not turned down */
	__u64 flow; /* out: flow_word(), when the filter's read set is on */
	__u32 dev_type; /* skb->dev->type */
	__u32 may_start; /* free_turned_down(): a journey may start here */
};

/* Whether a's packet was turned down, by its header digest (then a->key)
 * or, without one, by skb; a free clears the slot. */
static __always_inline bool by_packet(struct start_arg *a, __u8 role)
{
	a->key = pkt_key(&a->id);
	return a->key ? known_rejected_pkt(a->id.head, a->key, role) :
			known_rejected(a->skb, &a->id, role);
}

/* Whether a's flow was turned down (a->flow: its word), viewed as on a
 * device of link type `type`. */
static __always_inline bool by_flow(struct start_arg *a, __u16 type)
{
	struct pkt_view v;
	__u64 w[8];

	if (!bpf_ksym_exists(bpf_rdonly_cast) || !pkt_view(type, &a->id, 0, &v))
		return false;
	a->flow = flow_of(&v, w);
	return a->flow && reject_hit(a->flow, a->flow, ROLE_PASS);
}

/*
 * The check of obs_begin() that ends most runs of start sites (every one
 * when the filter matches nothing): 1 when the skb is not followed and its
 * packet was turned down already. Done before an observation is set up,
 * whose zeroing and device reads cost as much again.
 */
__noinline int turned_down(struct start_arg *a)
{
	if (!a)
		return 0;
	if (followed(a->skb))
		return 0;
	/* By the bytes the filter reads (every packet of a flow turned down),
	 * then by packet. */
	if (by_flow(a, a->dev_type) || by_packet(a, ROLE_PASS)) {
		forget_seen();
		return 1;
	}
	a->checked = 1;
	return 0;
}

/*
 * turned_down() for a free: 1 when the skb is not followed and nothing
 * more is to be done. Its packet's rejected slot is cleared (the address
 * will be another packet's); a drop of a packet the filter turned down by
 * flow ends here too, and a packet never seen goes on to the filter
 * (drops start journeys, consumes do not). skb->dev is not read: where
 * packets are freed it may hold something else (see pre_read()), and a
 * fault costs microseconds; the view takes the MAC header to be Ethernet
 * when there is one before the network header, so that of a packet from
 * another link type differs from its start sites' and it is filtered
 * again, no more.
 */
__noinline int free_turned_down(struct start_arg *a)
{
	if (!a)
		return 0;
	if (followed(a->skb))
		return 0;
	if (by_packet(a, ROLE_FREE) || !a->may_start || by_flow(a, ARPHRD_ETHER)) {
		forget_seen();
		return 1;
	}
	a->checked = 1;
	return 0;
}
#endif

/* Everything a site sees of its packet, observed (see observe()). */
static __always_inline void observe_skb(__u64 *ctx, const __u32 slot, __u64 key, bool checked,
					__u64 flow)
{
	struct obs o = {};
	__u64 n;

	o.skb = ctx_arg(ctx, cfg.slots[slot].skb_arg);
	/* The tracepoint's own device (the sender's, for net_dev_xmit on
	 * veth, where skb->dev already is the peer). */
	if (cfg.slots[slot].dev_arg < MAX_ARGS)
		o.dev = ctx_arg(ctx, cfg.slots[slot].dev_arg);
	if (cfg.slots[slot].sock_arg < MAX_ARGS)
		o.sk = ctx_arg(ctx, cfg.slots[slot].sock_arg);
	if (cfg.slots[slot].qdisc_arg < MAX_ARGS)
		o.qdisc = ctx_arg(ctx, cfg.slots[slot].qdisc_arg);
	for (n = 0; n < MAX_ARGS; n++)
		o.args[n] = n < cfg.slots[slot].nargs ? ctx_arg(ctx, n) : 0;
	o.site = slot;
	o.kind = EVENT_SKB;
	o.role = cfg.slots[slot].role;
	o.may_start = !(cfg.slots[slot].flags & SLOT_F_NO_START);
	o.consume = !!(cfg.slots[slot].flags & SLOT_F_CONSUME);
#ifndef PKTPATH_RAW_TP
	pre_read(&o, (struct sk_buff *)ctx_arg(ctx, cfg.slots[slot].skb_arg),
		 cfg.slots[slot].dev_arg < MAX_ARGS ?
			 (struct net_device *)ctx_arg(ctx, cfg.slots[slot].dev_arg) : NULL,
		 cfg.slots[slot].sock_arg < MAX_ARGS ?
			 (struct sock *)ctx_arg(ctx, cfg.slots[slot].sock_arg) : NULL,
		 cfg.slots[slot].role, !checked);
	/* From turned_down(), for the same skb, not changed since. */
	o.checked = checked;
	o.flow = flow;
	if (key) {
		o.key = key;
		o.have_key = 1;
	}
#endif
	observe(&o);
}

static __always_inline int handle_skb(__u64 *ctx, const __u32 slot)
{
	__u64 key = 0, flow = 0;
	bool checked = false;

	/*
	 * Most packets at a site are not followed (all of them when the
	 * filter matches nothing): where no journey starts, tracked_total or
	 * one lookup tells, with no call while nothing is followed; where one
	 * does (tp_btf), one lookup and the rejected check. Only
	 * then is an observation set up. cfg is constant: the verifier drops
	 * the branches of other slots.
	 */
	if ((cfg.slots[slot].flags & SLOT_F_NO_START) && cfg.slots[slot].role != ROLE_FREE) {
		struct skb_arg a = { .skb = ctx_arg(ctx, cfg.slots[slot].skb_arg) };

		if (!tracked_total) {
			forget_seen();
			return 0;
		}
		if (not_followed(&a))
			return 0;
	}
#ifndef PKTPATH_RAW_TP
	if ((!(cfg.slots[slot].flags & SLOT_F_NO_START) && cfg.slots[slot].role == ROLE_PASS) ||
	    cfg.slots[slot].role == ROLE_FREE) {
		struct sk_buff *skb = (struct sk_buff *)ctx_arg(ctx, cfg.slots[slot].skb_arg);
		struct start_arg a = {};

		if (skb) {
			a.skb = (__u64)skb;
			a.id.head = (__u64)skb->head;
			a.id.data = (__u64)skb->data;
			a.id.tail = skb->tail;
			a.id.nh = skb->network_header;
			a.id.mac = skb->mac_header;
			a.id.proto = skb->protocol;
			if (cfg.slots[slot].role == ROLE_FREE) {
				a.may_start = !(cfg.slots[slot].flags & SLOT_F_NO_START);
				if (a.id.head && free_turned_down(&a))
					return 0;
			} else {
				a.dev_type = skb->dev ? skb->dev->type : ARPHRD_ETHER;
				if (a.id.head && turned_down(&a))
					return 0;
			}
			key = a.key;
			checked = a.checked;
			flow = a.flow;
		}
	}
#endif
	observe_skb(ctx, slot, key, checked, flow);
	return 0;
}

/*
 * Function sites.
 *
 * One entry observation per call of a function that takes a packet; for
 * functions that return a packet, one more at return. A returned skb other
 * than the argument (a clone, a copy, a reallocation) inherits the
 * argument's journey.
 */
/* nf_state: the struct nf_hook_state * argument, when the site has one. */
static __always_inline void func_entry(__u64 func_ip, struct sk_buff *skb, __u32 site,
				       __u64 nf_state)
{
	struct func_cfg *fc = bpf_map_lookup_elem(&func_cfgs, &site);
	struct obs o = {};

	if (!fc || !skb)
		return;
	o.skb = (__u64)skb;
	o.site = site;
	o.kind = EVENT_FUNC;
	o.role = fc->role;
	o.may_start = !(fc->flags & FUNC_F_NO_START);
	o.args[0] = func_ip;
	if (nf_state) {
		struct nf_hook_state *st = (void *)nf_state;

		o.args[1] = BPF_CORE_READ(st, hook);
		o.args[2] = BPF_CORE_READ(st, pf) | 0x100; /* 0x100: present */
	}
	observe(&o);
}

/* A returned skb other than the argument joins the argument's journey. */
__noinline int inherit(__u64 parent, __u64 ret)
{
	struct track *pt, child = {};
	struct net_device *dev;
	struct skb_ident id = {};
	struct pkt_view v = {};
	struct skb_meta m = {};

	pt = followed(parent);
	if (!pt || followed(ret))
		return 0;
	child.journey = pt->journey;
	child.last_ts = bpf_ktime_get_ns();
	skb_meta((void *)ret, &m);
	dev = BPF_CORE_READ((struct sk_buff *)ret, dev);
	if (skb_ident((void *)ret, &id) &&
	    pkt_view(dev_type(dev), &id, m.len, &v))
		child.fp = fingerprint(&v);
	child.inner_fp = pt->inner_fp;
	child.head = id.head;
	child.mac = id.mac;
	child.nh = id.nh;
	track_put(ret, &child);
	return 1;
}

static __always_inline void func_return(struct sk_buff *parent, struct sk_buff *ret,
					__u32 site, __u64 ip)
{
	struct obs o = {};

	if (!ret)
		return;
	if (parent && ret != parent)
		inherit((__u64)parent, (__u64)ret);
	o.skb = (__u64)ret;
	o.site = site;
	o.kind = EVENT_FUNC_RET;
	o.role = ROLE_PASS;
	o.args[0] = ip;
	o.args[1] = (__u64)parent;
	observe(&o);
}

/* The site id of this copy of a template, patched in before load. */
static __always_inline __u32 patched_site(void)
{
	__u64 site;

	asm volatile("%0 = %1" : "=r"(site) : "i"(SITE_MAGIC));
	return site;
}

/* The skb a struct sk_buff ** argument points to. */
static __always_inline struct sk_buff *skb_through(__u64 pp)
{
	struct sk_buff *skb = NULL;

	if (pp)
		bpf_probe_read_kernel(&skb, sizeof(skb), (void *)pp);
	return skb;
}

static __always_inline __u64 func_nf_state(void *ctx, __u32 site)
{
	struct func_cfg *fc = bpf_map_lookup_elem(&func_cfgs, &site);
	__u64 v = 0;

	if (!fc || fc->nf_state_arg >= 12)
		return 0;
	bpf_get_func_arg(ctx, fc->nf_state_arg, &v);
	return v;
}

static __always_inline struct sk_buff *func_skb(void *ctx, __u32 site)
{
	struct func_cfg *fc = bpf_map_lookup_elem(&func_cfgs, &site);
	__u64 skb = 0;

	if (!fc || fc->skb_arg >= 12)
		return NULL;
	bpf_get_func_arg(ctx, fc->skb_arg, &skb);
	if (fc->flags & FUNC_F_SKB_PTRPTR)
		return skb_through(skb);
	return (void *)skb;
}

SEC("fentry/netif_receive_skb")
int fentry_tpl(__u64 *ctx)
{
	__u32 site = patched_site();

	func_entry(bpf_get_func_ip(ctx), func_skb(ctx, site), site, func_nf_state(ctx, site));
	return 0;
}

SEC("fexit/skb_clone")
int fexit_tpl(__u64 *ctx)
{
	__u32 site = patched_site();
	__u64 ret = 0;

	bpf_get_func_ret(ctx, &ret);
	func_return(func_skb(ctx, site), (void *)ret, site, bpf_get_func_ip(ctx));
	return 0;
}

/* x86-64 argument registers in struct pt_regs (uapi, stable offsets). */
#define REGS_LOAD(ctx, off) CTX_LOAD(ctx, off)

static __always_inline __u64 kprobe_arg(struct pt_regs *ctx, __u32 i)
{
	switch (i) {
	case 0: return REGS_LOAD(ctx, 112); /* di */
	case 1: return REGS_LOAD(ctx, 104); /* si */
	case 2: return REGS_LOAD(ctx, 96);  /* dx */
	case 3: return REGS_LOAD(ctx, 88);  /* cx */
	case 4: return REGS_LOAD(ctx, 72);  /* r8 */
	case 5: return REGS_LOAD(ctx, 64);  /* r9 */
	}
	return 0;
}

static __always_inline int kprobe_common(struct pt_regs *ctx)
{
	__u32 site = bpf_get_attach_cookie(ctx);
	struct func_cfg *fc = bpf_map_lookup_elem(&func_cfgs, &site);
	struct sk_buff *skb;

	if (!fc || fc->skb_arg >= 6)
		return 0;
	skb = (void *)kprobe_arg(ctx, fc->skb_arg);
	if (fc->flags & FUNC_F_SKB_PTRPTR)
		skb = skb_through((__u64)skb);
	if (fc->flags & FUNC_F_RETURNS_SKB) {
		__u64 id = bpf_get_current_pid_tgid();
		struct ret_stash st = { .skb = (__u64)skb, .site = site };

		bpf_map_update_elem(&stash, &id, &st, BPF_ANY);
	}
	func_entry(bpf_get_func_ip(ctx), skb, site,
		   fc->nf_state_arg < 6 ? kprobe_arg(ctx, fc->nf_state_arg) : 0);
	return 0;
}

static __always_inline int kretprobe_common(struct pt_regs *ctx)
{
	__u32 site = bpf_get_attach_cookie(ctx);
	__u64 id = bpf_get_current_pid_tgid();
	struct ret_stash *st = bpf_map_lookup_elem(&stash, &id);
	struct sk_buff *parent = NULL;

	if (st && st->site == site)
		parent = (void *)st->skb;
	if (st)
		bpf_map_delete_elem(&stash, &id);
	func_return(parent, (void *)REGS_LOAD(ctx, 80), site, bpf_get_func_ip(ctx));
	return 0;
}

SEC("kprobe.multi")
int kprobe_multi(struct pt_regs *ctx) { return kprobe_common(ctx); }

SEC("kretprobe.multi")
int kretprobe_multi(struct pt_regs *ctx) { return kretprobe_common(ctx); }

SEC("kprobe")
int kprobe_one(struct pt_regs *ctx) { return kprobe_common(ctx); }

SEC("kretprobe")
int kretprobe_one(struct pt_regs *ctx) { return kretprobe_common(ctx); }

/* MAX_SLOTS of them: slot_0 to slot_47 (a test of src/abi.rs counts). */
#define SLOT(n) \
	TP_SEC("pktpath_slot") int slot_##n(__u64 *ctx) { return handle_skb(ctx, n); }

SLOT(0) SLOT(1) SLOT(2) SLOT(3) SLOT(4) SLOT(5) SLOT(6) SLOT(7)
SLOT(8) SLOT(9) SLOT(10) SLOT(11) SLOT(12) SLOT(13) SLOT(14) SLOT(15)
SLOT(16) SLOT(17) SLOT(18) SLOT(19) SLOT(20) SLOT(21) SLOT(22) SLOT(23)
SLOT(24) SLOT(25) SLOT(26) SLOT(27) SLOT(28) SLOT(29) SLOT(30) SLOT(31)
SLOT(32) SLOT(33) SLOT(34) SLOT(35) SLOT(36) SLOT(37) SLOT(38) SLOT(39)
SLOT(40) SLOT(41) SLOT(42) SLOT(43) SLOT(44) SLOT(45) SLOT(46) SLOT(47)

/* The tracked packet this CPU is handling, if recent. */
static __always_inline struct current *recent_current(__u64 now, __u64 window)
{
	__u32 zero = 0;
	struct current *c = bpf_map_lookup_elem(&cpu_current, &zero);

	if (!c || !c->skb || now - c->ts > window)
		return NULL;
	return c;
}

static __always_inline struct event *new_event(__u64 now, __u16 kind, __u16 site)
{
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e) {
		count(CNT_LOST);
		return NULL;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->ts = now;
	e->kind = kind;
	e->site = site;
	e->cpu = bpf_get_smp_processor_id();
	e->flags = EVENT_F_CORRELATED;
	return e;
}

static __always_inline void fill_nh_dev(struct event *e, struct net_device *dev)
{
	if (!dev)
		return;
	e->ifindex = BPF_CORE_READ(dev, ifindex);
	e->netns = BPF_CORE_READ(dev, nd_net.net, ns.inum);
	BPF_CORE_READ_STR_INTO(&e->dev, dev, name);
}

/*
 * fib_table_lookup(u32 tb_id, const struct flowi4 *flp,
 *		    const struct fib_nh_common *nhc, int err)
 * args[]: 0 table, 1 err, 2 daddr, 3 saddr, 4 gateway, 5 oif of the flow
 */
TP_SEC("fib_table_lookup")
int fib4(__u64 *ctx)
{
	const struct flowi4 *flp = (void *)ctx[1];
	const struct fib_nh_common *nhc = (void *)ctx[2];
	__u64 now = bpf_ktime_get_ns();
	struct event ev = {}, *e = &ev;
	__u32 daddr, zero = 0;
	struct cpu_seen *seen;
	struct current *c;
	int iif;

	if (!cfg.fib_correlate)
		return 0;
	daddr = BPF_CORE_READ(flp, daddr);
	iif = BPF_CORE_READ(flp, __fl_common.flowic_iif);
	e->ts = now;
	e->kind = EVENT_FIB4;
	e->cpu = bpf_get_smp_processor_id();
	e->flags = EVENT_F_CORRELATED;
	e->args[0] = (__u32)ctx[0];
	e->args[1] = (__s32)ctx[3];
	e->args[2] = daddr;
	e->args[3] = BPF_CORE_READ(flp, saddr);
	e->args[5] = BPF_CORE_READ(flp, __fl_common.flowic_oif);
	/* The mark the lookup used (ip rule fwmark), which a rule of the
	 * packet's own (meta mark set) may have changed since its last site. */
	e->mark = BPF_CORE_READ(flp, __fl_common.flowic_mark);
	if (nhc) {
		if (BPF_CORE_READ(nhc, nhc_gw_family) == 2)
			e->args[4] = BPF_CORE_READ(nhc, nhc_gw.ipv4);
		fill_nh_dev(e, BPF_CORE_READ(nhc, nhc_dev));
	}
	if (iif == LOOPBACK_IFINDEX) {
		/* An output lookup: its packet does not exist yet. */
		struct event *p = bpf_map_lookup_elem(&pending_fib, &zero);

		if (p)
			__builtin_memcpy(p, e, sizeof(*e));
		return 0;
	}
	/*
	 * An input lookup (routing the packet this CPU just received on device
	 * iif, whatever DNAT made of its destination: the address cannot tell,
	 * so no other packet may have come to a site since). Lookups without an
	 * input device are address-type queries (ARP, local checks), not routing.
	 */
	c = recent_current(now, FIB_INPUT_NS);
	seen = bpf_map_lookup_elem(&cpu_seen, &zero);
	if (!iif || !c || !seen || seen->skb != c->skb || iif != c->ifindex ||
	    (e->netns && e->netns != c->netns))
		return 0;
	e->journey = c->journey;
	e->skb = c->skb;
	e->netns = c->netns;
	c->gw4 = e->args[4];
	if (bpf_ringbuf_output(&events, e, sizeof(*e), rb_flags()))
		count(CNT_LOST);
	return 0;
}


/*
 * fib6_table_lookup(const struct net *net, const struct fib6_result *res,
 *		     struct fib6_table *table, const struct flowi6 *flp)
 * args[]: 0 table, 1 route type; data[]: daddr, saddr, gateway (16 bytes each)
 */
TP_SEC("fib6_table_lookup")
int fib6(__u64 *ctx)
{
	const struct fib6_result *res = (void *)ctx[1];
	const struct fib6_table *table = (void *)ctx[2];
	const struct flowi6 *flp = (void *)ctx[3];
	__u64 now = bpf_ktime_get_ns();
	struct event ev = {}, *e = &ev;
	__u32 zero = 0;
	struct fib6_nh *nh;
	struct current *c;

	if (!cfg.fib_correlate)
		return 0;
	BPF_CORE_READ_INTO((struct in6_addr *)e->data, flp, daddr);
	c = recent_current(now, CORRELATE_NS);
	e->ts = now;
	e->kind = EVENT_FIB6;
	e->cpu = bpf_get_smp_processor_id();
	e->flags = EVENT_F_CORRELATED;
	e->args[0] = table ? BPF_CORE_READ(table, tb6_id) : 0;
	e->args[1] = BPF_CORE_READ(res, fib6_type);
	e->mark = BPF_CORE_READ(flp, __fl_common.flowic_mark);
	BPF_CORE_READ_INTO((struct in6_addr *)&e->data[16], flp, saddr);
	nh = BPF_CORE_READ(res, nh);
	if (nh) {
		BPF_CORE_READ_INTO((struct in6_addr *)&e->data[32], nh, nh_common.nhc_gw.ipv6);
		fill_nh_dev(e, BPF_CORE_READ(nh, nh_common.nhc_dev));
	}
	e->data_len = 48;
	if (!c || (!same16(e->data, c->daddr6) && !same16(e->data, c->saddr6))) {
		/* An output lookup, maybe: its packet does not exist yet. */
		struct event *p = bpf_map_lookup_elem(&pending_fib, &zero);

		if (p && BPF_CORE_READ(flp, __fl_common.flowic_iif) == LOOPBACK_IFINDEX)
			__builtin_memcpy(p, e, sizeof(*e));
		return 0;
	}
	e->journey = c->journey;
	e->skb = c->skb;
	e->netns = c->netns;
	__builtin_memcpy(c->gw6, &e->data[32], 16);
	if (bpf_ringbuf_output(&events, e, sizeof(*e), rb_flags()))
		count(CNT_LOST);
	return 0;
}

/*
 * sk_data_ready(const struct sock *sk): data was queued to a socket. For a
 * datagram socket it is the packet this CPU is handling (no other packet
 * came to a site since), queued by the protocol's receive path right after
 * its input route lookup: UDP, UDP-Lite, and ping sockets (ICMP and ICMPv6
 * datagram sockets; a raw socket is given a copy, and the packet goes on).
 * TCP has its own tracepoints (and coalesces).
 * args[]: 0 family, 1 protocol, 2 local port (a ping socket's echo id),
 * 3 socket inode;
 * data[]: the bound address (4 or 16 bytes).
 */
TP_SEC("sk_data_ready")
int sock_ready(__u64 *ctx)
{
	const struct sock *sk = (void *)ctx[0];
	__u64 now = bpf_ktime_get_ns();
	struct cpu_seen *seen;
	struct socket *sock;
	struct current *c;
	struct track *t;
	struct event *e;
	__u32 zero = 0;
	__u16 proto, family;

	if (!cfg.fib_correlate)
		return 0;
	c = recent_current(now, CORRELATE_NS);
	seen = bpf_map_lookup_elem(&cpu_seen, &zero);
	if (!c || !seen || seen->skb != c->skb)
		return 0;
	proto = BPF_CORE_READ(sk, sk_protocol);
	if (proto != IPPROTO_UDP && proto != IPPROTO_UDPLITE &&
	    !((proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6) &&
	      BPF_CORE_READ(sk, sk_type) == SOCK_DGRAM))
		return 0;
	if (BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum) != c->netns)
		return 0;
	/* Delivered: its journey ends here, as a TCP segment's at its copy.
	 * Its free, when the application has read it (or later, deferred to
	 * another CPU), is not a step: it came after the journey was handed
	 * out, counted late. */
	t = followed(c->skb);
	if (t)
		t->state = ROLE_DELIVER;
	e = new_event(now, EVENT_SOCK, 0);
	if (!e)
		return 0;
	family = BPF_CORE_READ(sk, __sk_common.skc_family);
	e->journey = c->journey;
	e->skb = c->skb;
	e->netns = c->netns;
	e->args[0] = family;
	e->args[1] = proto;
	e->args[2] = BPF_CORE_READ(sk, __sk_common.skc_num);
	sock = BPF_CORE_READ(sk, sk_socket);
	if (sock)
		e->args[3] = BPF_CORE_READ((struct socket_alloc *)sock, vfs_inode.i_ino);
	if (family == AF_INET6) {
		BPF_CORE_READ_INTO((struct in6_addr *)e->data, sk, __sk_common.skc_v6_rcv_saddr);
		e->data_len = 16;
	} else {
		BPF_CORE_READ_INTO((__be32 *)e->data, sk, __sk_common.skc_rcv_saddr);
		e->data_len = 4;
	}
	bpf_ringbuf_submit(e, rb_flags());
	return 0;
}

/*
 * neigh_event_send_done(struct neighbour *n, int err): the output path had to
 * resolve the next hop. args[]: 0 nud_state, 1 err; data[]: the next hop.
 */
TP_SEC("neigh_event_send_done")
int neigh_done(__u64 *ctx)
{
	struct neighbour *n = (void *)ctx[0];
	__u64 now = bpf_ktime_get_ns();
	struct event ev = {}, *e = &ev;
	struct current *c;
	__u32 key, zero = 0;

	if (!cfg.fib_correlate)
		return 0;
	e->ts = now;
	e->kind = EVENT_NEIGH;
	e->cpu = bpf_get_smp_processor_id();
	e->flags = EVENT_F_CORRELATED;
	e->args[0] = BPF_CORE_READ(n, nud_state);
	e->args[1] = (__s32)ctx[1];
	fill_nh_dev(e, BPF_CORE_READ(n, dev));
	bpf_probe_read_kernel(e->data, 16, (void *)n + bpf_core_field_offset(n->primary_key));
	e->data_len = 16;
	e->args[2] = BPF_CORE_READ(n, tbl, family);
	__builtin_memcpy(&key, e->data, 4);
	c = recent_current(now, CORRELATE_NS);
	if (c && e->netns == c->netns &&
	    (e->args[2] == AF_INET6
		     ? same16(e->data, c->daddr6) || same16(e->data, c->gw6)
		     : key == c->daddr4 || (c->gw4 && key == c->gw4))) {
		e->journey = c->journey;
		e->skb = c->skb;
		if (bpf_ringbuf_output(&events, e, sizeof(*e), rb_flags()))
			count(CNT_LOST);
	} else {
		/* Maybe for a packet about to be transmitted for the first time. */
		struct event *p = bpf_map_lookup_elem(&pending_neigh, &zero);

		if (p)
			__builtin_memcpy(p, e, sizeof(*e));
	}
	return 0;
}
