//! What a container process gives up between fork and exec: resource
//! limits, capabilities, new privileges, and the system calls its seccomp
//! filter denies. Built once per container from [`Security`]; applied in
//! every child by [`Confinement::apply_before_user`] and
//! [`Confinement::apply_after_user`], which only make raw system calls (the
//! child of a fork may not allocate).

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use rustix::thread::{CapabilitySet, CapabilitySets};
use skiff_proto::v1::Security;

/// The highest capability number this code knows (CAP_CHECKPOINT_RESTORE).
const LAST_CAP: u32 = 40;
/// 8 bytes per `struct sock_filter`.
const BPF_INSN_LEN: usize = 8;
/// The kernel's BPF_MAXINSNS.
const MAX_INSNS: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum ConfinementError {
    #[error("the seccomp filter is {0} bytes, not a whole number of 8-byte instructions")]
    FilterLength(usize),
    #[error("the seccomp filter has {0} instructions; the kernel takes at most 4096")]
    FilterTooLong(usize),
}

/// A container's confinement, ready to apply in a child.
pub struct Confinement {
    pub privileged: bool,
    capabilities: CapabilitySet,
    user_capabilities: CapabilitySet,
    no_new_privileges: bool,
    filter: Vec<libc::sock_filter>,
    rlimits: Vec<(u32, libc::rlimit)>,
    /// The container cgroup's cgroup.procs, which every process joins.
    cgroup_procs: Option<OwnedFd>,
}

impl Confinement {
    pub fn new(s: &Security, cgroup_procs: Option<OwnedFd>) -> Result<Self, ConfinementError> {
        let filter = decode_filter(&s.seccomp_filter)?;
        let rlimits = s
            .rlimits
            .iter()
            .map(|r| {
                (
                    r.resource,
                    libc::rlimit {
                        rlim_cur: r.soft,
                        rlim_max: r.hard,
                    },
                )
            })
            .collect();
        // The host has already resolved --privileged into all capabilities
        // and no filter.
        Ok(Self {
            privileged: s.privileged,
            capabilities: CapabilitySet::from_bits_retain(s.capabilities),
            user_capabilities: CapabilitySet::from_bits_retain(s.user_capabilities),
            no_new_privileges: s.no_new_privileges,
            filter,
            rlimits,
            cgroup_procs,
        })
    }

    /// While the child is still root with every capability: joins the
    /// cgroup, sets limits, and (without no-new-privileges, which installing
    /// a filter then needs CAP_SYS_ADMIN for) installs the seccomp filter, as
    /// runc does; the filter must then allow what follows (docker's does).
    pub fn apply_before_user(&self, switching_to_non_root: bool) -> io::Result<()> {
        if let Some(procs) = &self.cgroup_procs {
            // "0" moves the writer itself.
            rustix::io::write(procs.as_fd(), b"0")?;
        }
        for (resource, limit) in &self.rlimits {
            // SAFETY: `limit` is a valid rlimit that lives across the call.
            if unsafe { libc::setrlimit(*resource as _, limit) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        for cap in 0..=LAST_CAP {
            let bit = CapabilitySet::from_bits_retain(1 << cap);
            if !self.capabilities.contains(bit) {
                match rustix::thread::remove_capability_from_bounding_set(bit) {
                    // A capability this kernel does not have.
                    Err(rustix::io::Errno::INVAL) => {}
                    other => other?,
                }
            }
        }
        if switching_to_non_root && !self.user_capabilities.is_empty() {
            rustix::thread::set_keep_capabilities(true)?;
        }
        if !self.no_new_privileges {
            self.install_filter()?;
        }
        Ok(())
    }

    /// After the user switch: the capability sets, then no-new-privileges
    /// and the filter as the very last step before exec.
    pub fn apply_after_user(&self, root: bool) -> io::Result<()> {
        if root {
            rustix::thread::set_capabilities(
                None,
                CapabilitySets {
                    effective: self.capabilities,
                    permitted: self.capabilities,
                    inheritable: CapabilitySet::empty(),
                },
            )?;
        } else if !self.user_capabilities.is_empty() {
            // A subset of `capabilities` (the host sends it so).
            let caps = self.user_capabilities;
            rustix::thread::set_capabilities(
                None,
                CapabilitySets {
                    effective: caps,
                    permitted: caps,
                    inheritable: caps,
                },
            )?;
            rustix::thread::set_keep_capabilities(false)?;
            for cap in 0..=LAST_CAP {
                let bit = CapabilitySet::from_bits_retain(1 << cap);
                if caps.contains(bit) {
                    rustix::thread::configure_capability_in_ambient_set(bit, true)?;
                }
            }
        }
        if self.no_new_privileges {
            rustix::thread::set_no_new_privs(true)?;
            self.install_filter()?;
        }
        Ok(())
    }

    fn install_filter(&self) -> io::Result<()> {
        if self.filter.is_empty() {
            return Ok(());
        }
        let prog = libc::sock_fprog {
            len: self.filter.len() as u16,
            filter: self.filter.as_ptr().cast_mut(),
        };
        // SAFETY: `prog` points at `self.filter`, which outlives the call;
        // the kernel copies the program.
        let rc = unsafe {
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                &prog as *const libc::sock_fprog,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// The wire form (8 bytes per instruction, native endian) as instructions.
fn decode_filter(bytes: &[u8]) -> Result<Vec<libc::sock_filter>, ConfinementError> {
    if !bytes.len().is_multiple_of(BPF_INSN_LEN) {
        return Err(ConfinementError::FilterLength(bytes.len()));
    }
    let n = bytes.len() / BPF_INSN_LEN;
    if n > MAX_INSNS {
        return Err(ConfinementError::FilterTooLong(n));
    }
    Ok(bytes
        .chunks_exact(BPF_INSN_LEN)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_decode_whole_instructions_only() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&0x06u16.to_ne_bytes());
        bytes.extend_from_slice(&[1, 2]);
        bytes.extend_from_slice(&0x7fff_0000u32.to_ne_bytes());
        let f = decode_filter(&bytes).unwrap();
        assert_eq!(
            (f[0].code, f[0].jt, f[0].jf, f[0].k),
            (6, 1, 2, 0x7fff_0000)
        );
        assert!(matches!(
            decode_filter(&bytes[..7]),
            Err(ConfinementError::FilterLength(7))
        ));
        assert!(matches!(
            decode_filter(&vec![0; 8 * 4097]),
            Err(ConfinementError::FilterTooLong(4097))
        ));
    }
}
