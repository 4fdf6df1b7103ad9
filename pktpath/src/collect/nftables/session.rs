//! A tracing session: our tables added in each namespace, a netlink
//! listener per namespace on a reader thread, and everything removed when
//! it ends (and what killed runs left, at the next start).

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

use crate::netns::NetnsRef;
use crate::source::Source;
use pktpath_core::clock::monotonic_ns;

use super::message::{parse_datagram, Inheritance, NftTrace, NFNLGRP_NFTRACE};
use super::{nft_in, parse_table_pid, CHAIN_PRIORITY, TABLE_PREFIX};

fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Deletes, in namespace `ns`, our tables whose process no longer exists
/// (left by a pktpath killed with SIGKILL); returns the tables deleted as
/// "FAMILY NAME".
pub fn sweep_leftovers(ns: &NetnsRef) -> Result<Vec<String>> {
    let (gone, script, _) = leftovers(ns)?;
    if !gone.is_empty() {
        nft_in(ns, &["-f", "-"], Some(&script))?;
    }
    Ok(gone)
}

/// [`sweep_leftovers`] in each of `namespaces`, in parallel; the tables
/// deleted as (netns name, "FAMILY NAME"). A namespace that vanished or
/// cannot be entered is passed over: there is nothing of ours to delete
/// that this run could reach.
pub fn sweep_everywhere(namespaces: &[NetnsRef]) -> Vec<(String, String)> {
    in_parallel(namespaces, sweep_leftovers)
        .into_iter()
        .filter_map(|(ns, r)| Some(r.ok()?.into_iter().map(move |t| (ns.name.clone(), t))))
        .flatten()
        .collect()
}

/// `f` on each namespace, eight at a time (each runs nft, a process).
fn in_parallel<T: Send>(
    namespaces: &[NetnsRef],
    f: impl Fn(&NetnsRef) -> T + Sync,
) -> Vec<(NetnsRef, T)> {
    std::thread::scope(|scope| {
        namespaces
            .chunks(8)
            .flat_map(|chunk| {
                let handles: Vec<_> = chunk
                    .iter()
                    .map(|ns| {
                        let f = &f;
                        scope.spawn(move || (ns.clone(), f(ns)))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("nft thread"))
                    .collect::<Vec<_>>()
            })
            .collect()
    })
}

/// Why nftables tracing cannot run here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    /// nf_tables is a module not loaded: no ruleset exists (and asking
    /// would load it).
    #[error("nf_tables is not loaded (no ruleset)")]
    NotLoaded,
    /// Rules may exist, but `nft` is not there to set tracing up.
    #[error("nft is not installed")]
    NoNft,
}

/// Why nftables tracing cannot run here, if it cannot: asked before a
/// session starts.
pub fn unavailable() -> Option<Unavailable> {
    // Asked first: even `nft --version` opens an nfnetlink socket, which
    // loads nfnetlink.
    if !crate::kernel::caps::nftables_loaded() {
        return Some(Unavailable::NotLoaded);
    }
    let have_nft = std::process::Command::new("nft")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    (!have_nft).then_some(Unavailable::NoNft)
}

/// A namespace set up: the leftover tables swept, and the listener (none
/// where there is no ruleset to trace).
type Prepared = (Vec<String>, Option<Socket>);

/// Sets up one namespace: sweeps leftovers, opens the listener, adds
/// `script` (our table). Returns the tables swept and the socket; no
/// socket where the namespace has no nftables table of its own: no rule
/// there to report, and tracing costs every packet netlink messages.
fn setup_one(ns: &NetnsRef, script: &str) -> Result<Prepared> {
    let (gone, mut all, ruleset) = leftovers(ns)?;
    if !ruleset {
        if !gone.is_empty() {
            nft_in(ns, &["-f", "-"], Some(&all))?;
        }
        return Ok((gone, None));
    }
    let socket = open_listener(ns)?;
    all.push_str(script);
    nft_in(ns, &["-f", "-"], Some(&all))
        .with_context(|| format!("cannot add the tracing table in netns {}", ns.name))?;
    Ok((gone, Some(socket)))
}

/// Tables of dead pktpath runs in `ns`, the nft script deleting them, and
/// whether `ns` has tables other than pktpath's (a ruleset to trace).
fn leftovers(ns: &NetnsRef) -> Result<(Vec<String>, String, bool)> {
    let listing = nft_in(ns, &["list", "tables"], None)?;
    let mut gone = Vec::new();
    let mut script = String::new();
    let mut ruleset = false;
    for line in listing.lines() {
        let mut w = line.split_whitespace();
        let (Some("table"), Some(family), Some(name)) = (w.next(), w.next(), w.next()) else {
            continue;
        };
        let Some(pid) = parse_table_pid(name) else {
            ruleset = true;
            continue;
        };
        if pid_alive(pid) {
            continue;
        }
        // Declaring it first makes the delete succeed even if another
        // process swept it meanwhile.
        script.push_str(&format!(
            "table {family} {name}\ndelete table {family} {name}\n"
        ));
        gone.push(format!("{family} {name}"));
    }
    Ok((gone, script, ruleset))
}

/// The nft script adding our tracing table; `matches` as from
/// [`super::translate::translate_filter`] (None: every packet).
pub fn table_script(table: &str, matches: Option<&[String]>) -> String {
    let all = [String::new()];
    let matches = matches.filter(|m| !m.is_empty()).unwrap_or(&all);
    let rules: String = matches
        .iter()
        .map(|m| {
            if m.is_empty() {
                "\t\tmeta nftrace set 1\n".to_string()
            } else {
                format!("\t\t{m} meta nftrace set 1\n")
            }
        })
        .collect();
    let chain = |name: &str, hook: &str| {
        format!(
            "\tchain {name} {{\n\t\ttype filter hook {hook} priority {CHAIN_PRIORITY}; policy accept;\n{rules}\t}}\n"
        )
    };
    format!(
        "table inet {table} {{\n{}{}}}\ntable bridge {table} {{\n{}{}}}\n",
        chain("pre", "prerouting"),
        chain("out", "output"),
        chain("pre", "prerouting"),
        chain("out", "output"),
    )
}

fn delete_script(table: &str) -> String {
    format!(
        "table inet {table}\ndelete table inet {table}\ntable bridge {table}\ndelete table bridge {table}\n"
    )
}

static SESSIONS: AtomicUsize = AtomicUsize::new(0);

/// Temporary tracing tables in some namespaces and the listener of their
/// traces. Dropping it removes the tables and stops the listener.
pub struct NftraceSession {
    table: String,
    namespaces: Vec<NetnsRef>,
    installed: Vec<NetnsRef>,
    rx: Receiver<Box<NftTrace>>,
    stop: Arc<AtomicBool>,
    stats: Arc<Stats>,
    reader: Option<JoinHandle<()>>,
    swept: Vec<(String, String)>,
    /// Namespaces left out because setting up there failed: (name, why).
    skipped: Vec<(String, String)>,
    /// Namespaces not traced: no nftables table there.
    without_rules: Vec<String>,
}

#[derive(Default)]
struct Stats {
    /// ENOBUFS from the kernel (messages lost) and messages we could not
    /// queue because the consumer did not keep up.
    lost: AtomicU64,
    malformed: AtomicU64,
    /// CLOCK_MONOTONIC time before which every message sent has been
    /// queued to the consumer (or counted lost).
    drained_ns: AtomicU64,
}

fn open_listener(ns: &NetnsRef) -> Result<Socket> {
    let open = || -> std::io::Result<Socket> {
        let mut s = Socket::new(NETLINK_NETFILTER)?;
        s.bind(&SocketAddr::new(0, 0))?;
        s.add_membership(NFNLGRP_NFTRACE)?;
        s.set_non_blocking(true)?;
        let size: libc::c_int = 8 << 20;
        // SAFETY: setsockopt with a pointer to a c_int of that size.
        unsafe {
            let p = &size as *const libc::c_int as *const libc::c_void;
            let n = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            if libc::setsockopt(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, p, n) != 0 {
                libc::setsockopt(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, p, n);
            }
        }
        Ok(s)
    };
    let socket = if ns.is_own() {
        open()
    } else {
        let path = ns.path.to_str().ok_or_else(|| anyhow!("bad netns path"))?;
        crate::netns::in_netns(path, open)?.join()?
    };
    socket.with_context(|| format!("cannot join NFNLGRP_NFTRACE in netns {}", ns.name))
}

/// Messages the reader queues for the consumer at most.
pub const QUEUE_LEN: usize = 1 << 14;

/// What an `NftraceSession` starts from.
pub struct SessionPlan<'a> {
    /// Where to trace.
    pub namespaces: &'a [NetnsRef],
    /// nft match expressions from [`super::translate::translate_filter`],
    /// one rule each; None traces every packet.
    pub matches: Option<Vec<String>>,
}

impl Source for NftraceSession {
    type Plan<'a> = SessionPlan<'a>;
    type Unavailable = Unavailable;

    fn unavailable() -> Option<Unavailable> {
        unavailable()
    }

    /// Sweeps leftovers of dead processes, opens a trace listener in each
    /// namespace, then adds the tracing table there.
    fn start(plan: SessionPlan<'_>) -> Result<NftraceSession> {
        NftraceSession::open(plan.namespaces, plan.matches)
    }

    /// Removes the tables and stops the listener; errors are returned here,
    /// where drop would ignore them.
    fn stop(mut self) -> Result<()> {
        self.shutdown()
    }
}

impl NftraceSession {
    fn open(namespaces: &[NetnsRef], matches: Option<Vec<String>>) -> Result<NftraceSession> {
        let n = SESSIONS.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let table = if n == 0 {
            format!("{TABLE_PREFIX}{pid}")
        } else {
            format!("{TABLE_PREFIX}{pid}_{n}")
        };
        // Each namespace: list tables (to sweep leftovers of dead runs),
        // open the listener, then one nft script deleting the leftovers
        // and adding our table. Namespaces are set up in parallel (two nft
        // runs each); one can vanish meanwhile (others' test networks,
        // containers stopping): skip it, fail only when none is left.
        let script = table_script(&table, matches.as_deref());
        let results = in_parallel(namespaces, |ns| setup_one(ns, &script));
        let mut swept = Vec::new();
        let mut skipped = Vec::new();
        let mut sockets = Vec::new();
        let mut traced = Vec::new();
        let mut without_rules = Vec::new();
        for (ns, r) in results {
            match r {
                Ok((tables, socket)) => {
                    swept.extend(tables.into_iter().map(|t| (ns.name.clone(), t)));
                    match socket {
                        Some(socket) => {
                            sockets.push((ns.inode, socket));
                            traced.push(ns);
                        }
                        None => without_rules.push(ns.name),
                    }
                }
                Err(e) => skipped.push((ns.name.clone(), format!("{e:#}"))),
            }
        }
        // Bounded: a reader that outruns the consumer loses messages
        // (counted), it does not grow the heap. Boxed: the queue's slots
        // are allocated up front (16,384 messages of 272 bytes were
        // 4.5 MB), the messages only while they are in it.
        let (tx, rx) = sync_channel(QUEUE_LEN);
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Stats::default());
        let reader = {
            let (stop, stats) = (stop.clone(), stats.clone());
            std::thread::Builder::new()
                .name("nftrace".into())
                .spawn(move || read_loop(sockets, tx, &stop, &stats))?
        };
        let session = NftraceSession {
            table,
            installed: traced.clone(),
            namespaces: traced,
            rx,
            stop,
            stats,
            reader: Some(reader),
            swept,
            skipped,
            without_rules,
        };
        if session.namespaces.is_empty() && !session.skipped.is_empty() {
            let why = session
                .skipped
                .first()
                .map_or("no namespace given".to_string(), |(n, e)| {
                    format!("netns {n}: {e}")
                });
            bail!("cannot add the tracing table: {why}");
        }
        Ok(session)
    }

    /// The name of our tables (families inet and bridge).
    pub fn table_name(&self) -> &str {
        &self.table
    }

    /// The namespaces traced.
    pub fn namespaces(&self) -> &[NetnsRef] {
        &self.namespaces
    }

    /// Namespaces left out because setting up there failed: (name, why).
    pub fn skipped(&self) -> &[(String, String)] {
        &self.skipped
    }

    /// Namespaces not traced because they have no nftables table.
    pub fn without_rules(&self) -> &[String] {
        &self.without_rules
    }

    /// Tables of dead processes removed at start: (netns name, "FAMILY NAME").
    pub fn swept(&self) -> &[(String, String)] {
        &self.swept
    }

    /// The next trace, if one is waiting.
    pub fn try_recv(&self) -> Option<NftTrace> {
        self.rx.try_recv().ok().map(|t| *t)
    }

    /// The next trace, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<NftTrace> {
        self.rx.recv_timeout(timeout).ok().map(|t| *t)
    }

    /// Up to `max` of the traces waiting now.
    pub fn drain(&self, max: usize) -> Vec<Box<NftTrace>> {
        self.rx.try_iter().take(max).collect()
    }

    /// Traces collected until `pred` holds for one of them or `timeout`
    /// passes (tests, and callers that wait for a known packet).
    pub fn collect_until(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&NftTrace) -> bool,
    ) -> Vec<NftTrace> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Some(t) = self.recv_timeout(left) else {
                break;
            };
            let done = pred(&t);
            out.push(t);
            if done {
                break;
            }
        }
        out
    }

    /// Messages lost: dropped by the kernel (socket buffer full) or not
    /// queued because nobody read them.
    pub fn lost(&self) -> u64 {
        self.stats.lost.load(Ordering::Relaxed)
    }

    /// CLOCK_MONOTONIC time before which every trace message the kernel
    /// sent is in the queue `drain` reads (or was counted lost). Read it
    /// before `drain`.
    pub fn drained_ns(&self) -> u64 {
        self.stats.drained_ns.load(Ordering::Acquire)
    }

    /// Messages that could not be decoded.
    pub fn malformed(&self) -> u64 {
        self.stats.malformed.load(Ordering::Relaxed)
    }

    fn shutdown(&mut self) -> Result<()> {
        let mut first_err = None;
        let script = delete_script(&self.table);
        for ns in self.installed.drain(..) {
            if let Err(e) = nft_in(&ns, &["-f", "-"], Some(&script)) {
                first_err.get_or_insert(e);
            }
        }
        self.stop.store(true, Ordering::Relaxed);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for NftraceSession {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            eprintln!("pktpath: removing the nftables tracing table: {e:#}");
        }
    }
}

fn read_loop(
    sockets: Vec<(u32, Socket)>,
    tx: SyncSender<Box<NftTrace>>,
    stop: &AtomicBool,
    stats: &Stats,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
    let mut inherit = Inheritance::default();
    let mut fds: Vec<libc::pollfd> = sockets
        .iter()
        .map(|(_, s)| libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    while !stop.load(Ordering::Relaxed) {
        // A socket that poll finds empty had nothing sent before this
        // (taken before it looks); the others are read below until they
        // are empty.
        let polled = monotonic_ns();
        // SAFETY: fds is a valid array of pollfd of that length.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 20) };
        if n < 0 {
            continue;
        }
        if n > 0 {
            // Let a few milliseconds of messages gather: woken for each
            // one, the thread spent more time switching than reading (the
            // 8 MiB socket buffer holds a hundred times more; the
            // consumer waits for them 200 ms anyway).
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        for (i, (ino, sock)) in sockets.iter().enumerate() {
            if fds[i].revents == 0 {
                continue;
            }
            fds[i].revents = 0;
            loop {
                buf.clear();
                match sock.recv(&mut buf, 0) {
                    Ok(_) => {
                        let now = monotonic_ns();
                        let (traces, bad) = parse_datagram(&buf, *ino, now);
                        stats.malformed.fetch_add(bad as u64, Ordering::Relaxed);
                        for mut t in traces {
                            // Our own chain's messages are not passed on,
                            // nor need they lend their headers: the next
                            // chain's first message has its own.
                            if t.is_own() {
                                continue;
                            }
                            inherit.apply(&mut t);
                            if t.is_end_marker() {
                                continue;
                            }
                            match tx.try_send(Box::new(t)) {
                                Ok(()) => {}
                                Err(TrySendError::Full(_)) => {
                                    stats.lost.fetch_add(1, Ordering::Relaxed);
                                }
                                Err(TrySendError::Disconnected(_)) => return,
                            }
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                        stats.lost.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        }
        stats.drained_ns.store(polled, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_script_has_rules_in_both_families() {
        let s = table_script("pktpath_trace_7", Some(&["udp dport 9".to_string()]));
        assert!(s.contains("table inet pktpath_trace_7 {"));
        assert!(s.contains("table bridge pktpath_trace_7 {"));
        assert!(s.contains("type filter hook prerouting priority -500; policy accept;"));
        assert!(s.contains("type filter hook output priority -500; policy accept;"));
        assert_eq!(s.matches("\t\tudp dport 9 meta nftrace set 1\n").count(), 4);
        let all = table_script("t", None);
        assert_eq!(all.matches("\t\tmeta nftrace set 1\n").count(), 4);
    }

    #[test]
    fn table_names() {
        assert_eq!(parse_table_pid("pktpath_trace_123"), Some(123));
        assert_eq!(parse_table_pid("pktpath_trace_123_4"), Some(123));
        assert_eq!(parse_table_pid("pktpath_trace_x"), None);
        assert_eq!(parse_table_pid("filter"), None);
    }
}
