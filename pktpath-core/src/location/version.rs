//! The upstream version of the running kernel, as source links need it.
//!
//! `uname -r` is not enough: distributions name their kernels by ABI, not
//! by the upstream release they ship (Debian's 6.1 is `6.1.0-57-amd64`
//! whatever its stable update; Ubuntu's 6.8 is `6.8.0-31-generic`). Each
//! says the upstream version elsewhere: Ubuntu in `/proc/version_signature`,
//! Debian in `uname -v`. A link to the wrong release points at other code.

use std::fmt;

/// An upstream kernel release: `6.12.107`, `6.12` (a `.0` release),
/// `6.9-rc3`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KernelVersion {
    pub major: u32,
    pub minor: u32,
    /// The stable update; 0 for the release itself.
    pub patch: u32,
    /// A release candidate of `major.minor` (its patch is then 0).
    pub rc: Option<u32>,
}

impl KernelVersion {
    pub const fn new(major: u32, minor: u32, patch: u32) -> KernelVersion {
        KernelVersion {
            major,
            minor,
            patch,
            rc: None,
        }
    }

    /// The version at the start of `text`: `6.12.107`, `6.12`,
    /// `6.9.0-rc3`, `6.9-rc3`, followed by anything that does not go on
    /// with a digit (`6.18.44-fc-v1300`, `6.12.107+deb12-amd64`,
    /// `6.11.4-301.fc41.x86_64`). None for anything else.
    pub fn parse(text: &str) -> Option<KernelVersion> {
        let text = text.trim();
        let (major, rest) = number(text)?;
        let (minor, mut rest) = number(rest.strip_prefix('.')?)?;
        let mut patch = 0;
        if let Some((p, r)) = rest.strip_prefix('.').and_then(number) {
            patch = p;
            rest = r;
        }
        let rc = rest
            .strip_prefix("-rc")
            .and_then(number)
            .map(|(n, _)| n)
            .filter(|_| patch == 0);
        Some(KernelVersion {
            major,
            minor,
            patch,
            rc,
        })
    }

    /// The upstream version from what a machine says of its kernel:
    /// `/proc/version_signature` (Ubuntu: `Ubuntu 6.8.0-31.31-generic
    /// 6.8.4`, its last field), the `Debian X.Y.Z-N` of `uname -v`, else
    /// `uname -r` (`6.18.44-fc-v1300`; Debian's `5.10.0-33-amd64` then
    /// gives only `5.10`).
    pub fn from_machine(
        version_signature: Option<&str>,
        uname_v: &str,
        uname_r: &str,
    ) -> Option<KernelVersion> {
        let ubuntu = version_signature
            .and_then(|s| s.split_whitespace().last())
            .and_then(KernelVersion::parse);
        let debian = || {
            let mut words = uname_v.split_whitespace();
            words.find(|w| *w == "Debian")?;
            KernelVersion::parse(words.next()?)
        };
        ubuntu
            .or_else(debian)
            .or_else(|| KernelVersion::parse(uname_r))
    }

    /// The running kernel's (None when it cannot be told).
    pub fn running() -> Option<KernelVersion> {
        let signature = std::fs::read_to_string("/proc/version_signature").ok();
        // SAFETY: uname fills the struct it is given, zeroed here; its
        // fields are NUL-terminated within their arrays.
        let (release, version) = unsafe {
            let mut u: libc::utsname = std::mem::zeroed();
            if libc::uname(&mut u) != 0 {
                return None;
            }
            (c_text(&u.release), c_text(&u.version))
        };
        KernelVersion::from_machine(signature.as_deref(), &version, &release)
    }

    /// The tag of this release in the kernel's git tree, as Elixir names
    /// it: `v6.12.107`, `v6.12` (a `.0` release has no `.0` tag),
    /// `v6.9-rc3`.
    pub fn tag(&self) -> String {
        format!("v{self}")
    }
}

/// `6.12.107`, `6.12`, `6.9-rc3`.
impl fmt::Display for KernelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)?;
        if self.patch != 0 {
            write!(f, ".{}", self.patch)?;
        }
        if let Some(rc) = self.rc {
            write!(f, "-rc{rc}")?;
        }
        Ok(())
    }
}

/// The decimal number `text` starts with, and what follows it.
fn number(text: &str) -> Option<(u32, &str)> {
    let end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    // At most 6 digits: no kernel number is longer, and u32 cannot overflow.
    if end == 0 || end > 6 {
        return None;
    }
    Some((text[..end].parse().ok()?, &text[end..]))
}

fn c_text(field: &[libc::c_char]) -> String {
    let bytes: Vec<u8> = field
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(signature: Option<&str>, v: &str, r: &str) -> Option<String> {
        KernelVersion::from_machine(signature, v, r).map(|k| k.tag())
    }

    #[test]
    fn ubuntu_says_it_in_the_version_signature() {
        assert_eq!(
            tag(
                Some("Ubuntu 6.8.0-31.31-generic 6.8.4\n"),
                "#31-Ubuntu SMP PREEMPT_DYNAMIC Sat Apr 20 00:40:06 UTC 2024",
                "6.8.0-31-generic"
            )
            .as_deref(),
            Some("v6.8.4")
        );
    }

    #[test]
    fn debian_says_it_in_uname_v() {
        // 6.1: uname -r names the ABI, not the release.
        assert_eq!(
            tag(
                None,
                "#1 SMP PREEMPT_DYNAMIC Debian 6.1.158-1 (2025-11-09)",
                "6.1.0-41-amd64"
            )
            .as_deref(),
            Some("v6.1.158")
        );
        assert_eq!(
            tag(
                None,
                "#1 SMP PREEMPT_DYNAMIC Debian 6.12.107-1~deb12u1 (2025-09-03)",
                "6.12.107+deb12-amd64"
            )
            .as_deref(),
            Some("v6.12.107")
        );
        // A backport.
        assert_eq!(
            tag(
                None,
                "#1 SMP PREEMPT_DYNAMIC Debian 6.12.12-1~bpo12+1 (2025-02-23)",
                "6.12.12+bpo-amd64"
            )
            .as_deref(),
            Some("v6.12.12")
        );
        // Debian's uname -r alone: the release series only.
        assert_eq!(
            tag(None, "#1 SMP 2024", "5.10.0-33-amd64").as_deref(),
            Some("v5.10")
        );
    }

    #[test]
    fn others_say_it_in_uname_r() {
        let r = |r: &str| tag(None, "#1 SMP PREEMPT_DYNAMIC @0", r);
        assert_eq!(r("6.18.44-fc-v1300").as_deref(), Some("v6.18.44"));
        assert_eq!(r("6.12.107+deb12-amd64").as_deref(), Some("v6.12.107"));
        assert_eq!(r("6.11.4-301.fc41.x86_64").as_deref(), Some("v6.11.4"));
        assert_eq!(r("6.11.2-arch1-1").as_deref(), Some("v6.11.2"));
        assert_eq!(r("6.9.0-rc3").as_deref(), Some("v6.9-rc3"));
        assert_eq!(r("6.9-rc3+").as_deref(), Some("v6.9-rc3"));
        assert_eq!(r("6.12.0-rc7-next-20241115").as_deref(), Some("v6.12-rc7"));
        // A .0 release is tagged without its .0.
        assert_eq!(r("6.12.0").as_deref(), Some("v6.12"));
        assert_eq!(r("6.12.0+").as_deref(), Some("v6.12"));
    }

    #[test]
    fn garbage_is_no_version() {
        for r in [
            "",
            " ",
            "6",
            "6.",
            ".6.1",
            "x6.1",
            "6.x",
            "linux",
            "99999999999999999999.1",
            "6.99999999999999999999",
            "\u{0}",
            "٦.١",
        ] {
            assert_eq!(KernelVersion::parse(r), None, "{r:?}");
            assert_eq!(KernelVersion::from_machine(None, "", r), None, "{r:?}");
        }
        // Garbage where the better sources are falls back to uname -r.
        assert_eq!(
            tag(Some("nonsense"), "Debian", "6.1.0-41-amd64").as_deref(),
            Some("v6.1")
        );
        assert_eq!(tag(Some(""), "Debian x", "").as_deref(), None);
        // A patch level too long to be one is not read as one.
        assert_eq!(
            KernelVersion::parse("6.1.1234567")
                .map(|k| k.tag())
                .as_deref(),
            Some("v6.1")
        );
    }

    #[test]
    fn the_running_kernel_has_a_release() {
        // Whatever the machine: uname(2) always answers on Linux.
        let v = KernelVersion::running().expect("a release");
        assert!(v.major >= 3, "{v}");
    }

    #[test]
    fn versions_print_as_released() {
        let v = |t: &str| KernelVersion::parse(t).unwrap().to_string();
        assert_eq!(v("6.12.107"), "6.12.107");
        assert_eq!(v("6.12.0"), "6.12");
        assert_eq!(v("6.9.0-rc3"), "6.9-rc3");
        // A stable update's release candidate is its stable update.
        assert_eq!(v("6.9.1-rc1"), "6.9.1");
    }
}
