// SPDX-License-Identifier: GPL-2.0
/*
 * Empty programs of every attach type, loaded one at a time by
 * `pktpath doctor` to learn by trying which backends this kernel allows.
 */
#include "vmlinux_min.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("fentry/netif_receive_skb")
int probe_fentry(__u64 *ctx) { return 0; }

SEC("fexit/netif_receive_skb")
int probe_fexit(__u64 *ctx) { return 0; }

SEC("kprobe.multi/netif_receive_skb")
int probe_kprobe_multi(void *ctx) { return 0; }

SEC("kprobe/netif_receive_skb")
int probe_kprobe(void *ctx) { return 0; }

SEC("tp_btf/netif_receive_skb")
int probe_tp_btf(__u64 *ctx) { return 0; }

SEC("raw_tp/netif_receive_skb")
int probe_raw_tp(void *ctx) { return 0; }
