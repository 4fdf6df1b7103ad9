/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The few kernel types pktpath reads, declared by hand for CO-RE: libbpf
 * relocates every field access against the running kernel's BTF at load, so
 * only names and types matter here, not offsets or the other fields.
 */
#ifndef __VMLINUX_MIN_H
#define __VMLINUX_MIN_H

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef signed char __s8;
typedef short __s16;
typedef int __s32;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef _Bool bool;
#define true 1
#define false 0

enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
	BPF_EXIST = 2,
};

enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_RINGBUF = 27,
};

/* x86-64 (uapi layout, read by fixed offsets; not relocated). */
struct pt_regs {
	unsigned long r15, r14, r13, r12, bp, bx, r11, r10, r9, r8;
	unsigned long ax, cx, dx, si, di, orig_ax, ip, cs, flags, sp, ss;
};

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct ns_common {
	unsigned int inum;
};

struct net {
	struct ns_common ns;
};

typedef struct {
	struct net *net;
} possible_net_t;

struct net_device {
	char name[16];
	int ifindex;
	unsigned short type;
	possible_net_t nd_net;
};

struct in6_addr {
	union {
		__u8 u6_addr8[16];
		__be32 u6_addr32[4];
	} in6_u;
};

struct sock_common {
	possible_net_t skc_net;
	unsigned short skc_family;
	/* In anonymous unions in the kernel's layout: CO-RE finds them. */
	__be32 skc_rcv_saddr;
	unsigned short skc_num;
	struct in6_addr skc_v6_rcv_saddr;
};

struct inode {
	unsigned long i_ino;
};

struct socket {
	short type;
};

/* A socket and its inode, allocated together (SOCK_INODE()). */
struct socket_alloc {
	struct socket socket;
	struct inode vfs_inode;
};

struct sock {
	struct sock_common __sk_common;
	unsigned short sk_protocol;
	unsigned short sk_type;
	struct socket *sk_socket;
};

struct sk_buff {
	struct net_device *dev;
	struct sock *sk;
	unsigned int len;
	unsigned int data_len;
	__u32 mark;
	__be16 protocol;
	__u16 transport_header;
	__u16 network_header;
	__u16 mac_header;
	unsigned int tail;
	unsigned int end;
	unsigned char *head;
	unsigned char *data;
	int skb_iif;
	__u32 hash;
	__u16 vlan_tci;
	__be16 vlan_proto;
	unsigned long _nfct; /* CONFIG_NF_CONNTRACK: struct nf_conn * | ctinfo */
};

struct nf_hook_state {
	__u8 hook;
	__u8 pf;
};

/* Connection tracking: only the parts pktpath copies (the tuple layout is
 * copied whole: 40 bytes, stable for years). */
struct nf_conntrack_tuple {
	__u8 bytes[40];
};

struct nf_conntrack_tuple_hash {
	struct nf_conntrack_tuple tuple;
};

struct nf_conntrack_zone {
	__u16 id;
};

struct nf_conn {
	struct nf_conntrack_zone zone;
	struct nf_conntrack_tuple_hash tuplehash[2];
	unsigned long status;
};

struct Qdisc_ops {
	char id[16];
};

struct Qdisc {
	const struct Qdisc_ops *ops;
	__u32 handle;
};

struct flowi_common {
	int flowic_oif;
	int flowic_iif;
	__u32 flowic_mark;
	__u8 flowic_proto;
};

struct flowi4 {
	struct flowi_common __fl_common;
	__be32 saddr;
	__be32 daddr;
};

struct flowi6 {
	struct flowi_common __fl_common;
	struct in6_addr daddr;
	struct in6_addr saddr;
};

struct fib_nh_common {
	struct net_device *nhc_dev;
	int nhc_oif;
	__u8 nhc_gw_family;
	union {
		__be32 ipv4;
		struct in6_addr ipv6;
	} nhc_gw;
};

struct fib6_nh {
	struct fib_nh_common nh_common;
};

struct fib6_table {
	__u32 tb6_id;
};

struct fib6_result {
	struct fib6_nh *nh;
	__u8 fib6_type;
};

struct neigh_table {
	int family;
};

struct neighbour {
	__u8 nud_state;
	struct net_device *dev;
	struct neigh_table *tbl;
	__u8 primary_key[0];
};

#pragma clang attribute pop

#endif
