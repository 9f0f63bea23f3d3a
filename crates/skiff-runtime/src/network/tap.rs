//! A container's tap device: opened on /dev/net/tun by the monitor and handed
//! to QEMU as an fd. It is not persistent, so the kernel deletes it when the
//! last holder (monitor or QEMU) is gone, even after a kill -9.

use std::fs::OpenOptions;
use std::os::fd::{AsRawFd, OwnedFd};

use super::NetworkError;

/// `struct ifreq` as TUNSETIFF reads it: the name, then the flags.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// `_IOW('T', 202, int)` from linux/if_tun.h (the libc crate lacks it).
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;

/// The tap of a container: `st-` and the first 12 digits of its id.
pub fn name_for(container_id: &str) -> String {
    format!("st-{}", &container_id[..container_id.len().min(12)])
}

/// Opens (creating) the tap `name`, with virtio-net headers so that QEMU can
/// pass checksum and segmentation offloads through.
pub fn open(name: &str) -> Result<OwnedFd, NetworkError> {
    let err = |e: std::io::Error| NetworkError::Tap {
        name: name.to_owned(),
        source: e,
    };
    if name.len() >= libc::IFNAMSIZ {
        return Err(err(std::io::Error::from_raw_os_error(libc::ENAMETOOLONG)));
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .map_err(err)?;
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as libc::c_short,
        _pad: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: TUNSETIFF reads and writes one `struct ifreq`, which `req` is
    // (name, flags, padding to its full 40 bytes), alive for the call.
    let r = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF as _, &mut req as *mut IfReq) };
    if r < 0 {
        return Err(err(std::io::Error::last_os_error()));
    }
    Ok(file.into())
}
