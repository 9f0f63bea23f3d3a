//! ConfigureNetwork by rtnetlink, with hand-built messages: a handful of
//! fixed structs and attributes is less code (and binary) than a netlink
//! crate stack.

use std::io;
use std::net::IpAddr;
use std::os::fd::OwnedFd;

use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};
use skiff_proto::v1::NetworkConfig;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_CREATE: u16 = 0x400;

const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;

const IFF_UP: u32 = 0x1;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_BOOT: u8 = 3;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RT_SCOPE_LINK: u8 = 253;
const RTN_UNICAST: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("invalid address {0:?} (want CIDR such as 10.0.0.2/24)")]
    BadCidr(String),
    #[error("invalid gateway {0:?}")]
    BadGateway(String),
    #[error("no interface named {0:?}")]
    NoInterface(String),
    #[error("no interface with mac {0}")]
    NoMac(String),
    #[error("{what}: {source}")]
    Netlink { what: String, source: io::Error },
}

/// Parses "10.0.0.2/24" or "fd00::2/64" (a bare address is a host address).
pub fn parse_cidr(s: &str) -> Result<(IpAddr, u8), NetError> {
    let bad = || NetError::BadCidr(s.to_owned());
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let addr: IpAddr = addr.trim().parse().map_err(|_| bad())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len {
        Some(l) => l.trim().parse::<u8>().map_err(|_| bad())?,
        None => max,
    };
    if len > max {
        return Err(bad());
    }
    Ok((addr, len))
}

fn family(addr: &IpAddr) -> u8 {
    if addr.is_ipv4() {
        AF_INET
    } else {
        AF_INET6
    }
}

fn addr_bytes(addr: &IpAddr) -> Vec<u8> {
    match addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// A netlink message under construction.
struct Message {
    buf: Vec<u8>,
}

impl Message {
    fn new(kind: u16, flags: u16, header: &[u8]) -> Self {
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set in finish()
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // sequence, set in finish()
        buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel
        buf.extend_from_slice(header);
        Self { buf }
    }

    fn attr(mut self, kind: u16, data: &[u8]) -> Self {
        let len = 4 + data.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.buf.resize(self.buf.len().next_multiple_of(4), 0);
        self
    }

    fn finish(mut self, seq: u32) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.buf
    }
}

fn ifinfomsg(index: i32, flags: u32, change: u32) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[4..8].copy_from_slice(&index.to_ne_bytes());
    h[8..12].copy_from_slice(&flags.to_ne_bytes());
    h[12..16].copy_from_slice(&change.to_ne_bytes());
    h
}

/// One link as the kernel reports it.
#[derive(Debug, Clone)]
pub struct Link {
    pub index: i32,
    pub name: String,
    pub mac: String,
}

pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

fn nl_err(what: &str) -> impl FnOnce(io::Error) -> NetError + '_ {
    move |source| NetError::Netlink {
        what: what.to_owned(),
        source,
    }
}

/// The messages in one datagram: (type, payload after the header).
fn messages(mut buf: &[u8]) -> Vec<(u16, u32, &[u8])> {
    let mut out = Vec::new();
    while buf.len() >= 16 {
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len < 16 || len > buf.len() {
            break;
        }
        let kind = u16::from_ne_bytes([buf[4], buf[5]]);
        let seq = u32::from_ne_bytes([buf[8], buf[9], buf[10], buf[11]]);
        out.push((kind, seq, &buf[16..len]));
        buf = &buf[len.next_multiple_of(4).min(buf.len())..];
    }
    out
}

/// Attributes after a fixed header: (type, data).
fn attrs(mut buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while buf.len() >= 4 {
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        if len < 4 || len > buf.len() {
            break;
        }
        // The top bits are NLA_F_NESTED / NLA_F_NET_BYTEORDER.
        let kind = u16::from_ne_bytes([buf[2], buf[3]]) & 0x3fff;
        out.push((kind, &buf[4..len]));
        buf = &buf[len.next_multiple_of(4).min(buf.len())..];
    }
    out
}

impl Netlink {
    pub fn open() -> Result<Self, NetError> {
        let fd = rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::RAW,
            SocketFlags::CLOEXEC,
            // NETLINK_ROUTE is protocol 0, which rustix spells as None.
            None,
        )
        .map_err(|e| nl_err("opening a netlink socket")(e.into()))?;
        Ok(Self { fd, seq: 1 })
    }

    fn send(&mut self, msg: Message) -> io::Result<u32> {
        self.seq = self.seq.wrapping_add(1);
        let bytes = msg.finish(self.seq);
        rustix::net::send(&self.fd, &bytes, SendFlags::empty())?;
        Ok(self.seq)
    }

    /// Reads datagrams of request `seq`, handing each message to `each`,
    /// until the acknowledgement (or the end of a dump).
    fn receive(&mut self, seq: u32, mut each: impl FnMut(u16, &[u8])) -> io::Result<()> {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let (_, n) = rustix::net::recv(&self.fd, &mut buf[..], RecvFlags::empty())?;
            for (kind, mseq, payload) in messages(&buf[..n.min(buf.len())]) {
                if mseq != seq {
                    continue;
                }
                match kind {
                    NLMSG_ERROR => {
                        let code = payload
                            .get(0..4)
                            .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                        return if code == 0 {
                            Ok(())
                        } else {
                            Err(io::Error::from_raw_os_error(-code))
                        };
                    }
                    NLMSG_DONE => return Ok(()),
                    _ => each(kind, payload),
                }
            }
        }
    }

    fn request(&mut self, msg: Message) -> io::Result<()> {
        let seq = self.send(msg)?;
        self.receive(seq, |_, _| {})
    }

    pub fn links(&mut self) -> Result<Vec<Link>, NetError> {
        let seq = self
            .send(Message::new(
                RTM_GETLINK,
                NLM_F_REQUEST | NLM_F_DUMP,
                &ifinfomsg(0, 0, 0),
            ))
            .map_err(nl_err("listing links"))?;
        let mut links = Vec::new();
        self.receive(seq, |kind, payload| {
            if kind != RTM_NEWLINK || payload.len() < 16 {
                return;
            }
            let index = i32::from_ne_bytes([payload[4], payload[5], payload[6], payload[7]]);
            let mut link = Link {
                index,
                name: String::new(),
                mac: String::new(),
            };
            for (kind, data) in attrs(&payload[16..]) {
                match kind {
                    IFLA_IFNAME => {
                        link.name = String::from_utf8_lossy(data)
                            .trim_end_matches('\0')
                            .to_owned()
                    }
                    IFLA_ADDRESS => {
                        link.mac = data
                            .iter()
                            .map(|b| format!("{b:02x}"))
                            .collect::<Vec<_>>()
                            .join(":")
                    }
                    _ => {}
                }
            }
            links.push(link);
        })
        .map_err(nl_err("listing links"))?;
        Ok(links)
    }

    pub fn set_up(&mut self, index: i32, mtu: u32) -> io::Result<()> {
        let mut msg = Message::new(
            RTM_NEWLINK,
            NLM_F_REQUEST | NLM_F_ACK,
            &ifinfomsg(index, IFF_UP, IFF_UP),
        );
        if mtu > 0 {
            msg = msg.attr(IFLA_MTU, &mtu.to_ne_bytes());
        }
        self.request(msg)
    }

    pub fn add_address(&mut self, index: i32, addr: IpAddr, prefix: u8) -> io::Result<()> {
        let mut h = [0u8; 8];
        h[0] = family(&addr);
        h[1] = prefix;
        h[3] = RT_SCOPE_UNIVERSE;
        h[4..8].copy_from_slice(&(index as u32).to_ne_bytes());
        let bytes = addr_bytes(&addr);
        let msg = Message::new(
            RTM_NEWADDR,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
            &h,
        )
        .attr(IFA_LOCAL, &bytes)
        .attr(IFA_ADDRESS, &bytes);
        self.request(msg)
    }

    pub fn add_route(
        &mut self,
        dest: Option<(IpAddr, u8)>,
        gateway: Option<IpAddr>,
        oif: Option<i32>,
    ) -> io::Result<()> {
        let fam = dest
            .map(|(a, _)| family(&a))
            .or(gateway.as_ref().map(family))
            .unwrap_or(AF_INET);
        let mut h = [0u8; 12];
        h[0] = fam;
        h[1] = dest.map_or(0, |(_, len)| len);
        h[4] = RT_TABLE_MAIN;
        h[5] = RTPROT_BOOT;
        h[6] = if gateway.is_some() {
            RT_SCOPE_UNIVERSE
        } else {
            RT_SCOPE_LINK
        };
        h[7] = RTN_UNICAST;
        let mut msg = Message::new(
            RTM_NEWROUTE,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
            &h,
        );
        if let Some((addr, _)) = dest.filter(|(_, len)| *len > 0) {
            msg = msg.attr(RTA_DST, &addr_bytes(&addr));
        }
        if let Some(gw) = gateway {
            msg = msg.attr(RTA_GATEWAY, &addr_bytes(&gw));
        }
        if let Some(index) = oif {
            msg = msg.attr(RTA_OIF, &index.to_ne_bytes());
        }
        self.request(msg)
    }
}

/// Applies `config`: every interface up (with its mtu), its addresses, then
/// the routes (which may need those addresses to reach their gateways).
pub fn configure(config: &NetworkConfig) -> Result<(), NetError> {
    let mut nl = Netlink::open()?;
    let links = nl.links()?;
    let index_of = |name: &str| links.iter().find(|l| l.name == name).map(|l| l.index);
    for iface in &config.interfaces {
        let index = if !iface.name.is_empty() {
            index_of(&iface.name).ok_or_else(|| NetError::NoInterface(iface.name.clone()))?
        } else {
            links
                .iter()
                .find(|l| l.mac.eq_ignore_ascii_case(&iface.mac))
                .map(|l| l.index)
                .ok_or_else(|| NetError::NoMac(iface.mac.clone()))?
        };
        let label = if iface.name.is_empty() {
            &iface.mac
        } else {
            &iface.name
        };
        nl.set_up(index, iface.mtu)
            .map_err(nl_err(&format!("bringing {label} up")))?;
        for cidr in &iface.addresses {
            let (addr, prefix) = parse_cidr(cidr)?;
            nl.add_address(index, addr, prefix)
                .map_err(nl_err(&format!("adding {cidr} to {label}")))?;
        }
    }
    for route in &config.routes {
        let dest = match route.destination.as_str() {
            "" | "default" => None,
            d => Some(parse_cidr(d)?),
        };
        let gateway = match route.gateway.as_str() {
            "" => None,
            g => Some(
                g.parse::<IpAddr>()
                    .map_err(|_| NetError::BadGateway(g.to_owned()))?,
            ),
        };
        let oif = match route.device.as_str() {
            "" => None,
            d => Some(index_of(d).ok_or_else(|| NetError::NoInterface(d.to_owned()))?),
        };
        let what = format!(
            "adding route {} via {:?} dev {:?}",
            route.destination, route.gateway, route.device
        );
        nl.add_route(dest, gateway, oif).map_err(nl_err(&what))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        assert_eq!(
            parse_cidr("10.88.0.2/16").unwrap(),
            ("10.88.0.2".parse().unwrap(), 16)
        );
        assert_eq!(
            parse_cidr("fd00::2/64").unwrap(),
            ("fd00::2".parse().unwrap(), 64)
        );
        assert_eq!(parse_cidr("10.0.0.1").unwrap().1, 32);
        assert!(parse_cidr("10.0.0.1/33").is_err());
        assert!(parse_cidr("nonsense/8").is_err());
        assert!(parse_cidr("::1/129").is_err());
    }

    #[test]
    fn message_layout() {
        let bytes = Message::new(RTM_NEWLINK, NLM_F_REQUEST, &ifinfomsg(3, IFF_UP, IFF_UP))
            .attr(IFLA_MTU, &1500u32.to_ne_bytes())
            .attr(IFLA_IFNAME, b"eth0\0")
            .finish(9);
        // 16 header + 16 ifinfomsg + 8 mtu + 12 (4 + 5 padded to 8) name.
        assert_eq!(bytes.len(), 52);
        assert_eq!(u32::from_ne_bytes(bytes[0..4].try_into().unwrap()), 52);
        assert_eq!(u32::from_ne_bytes(bytes[8..12].try_into().unwrap()), 9);
        let parsed = messages(&bytes);
        assert_eq!(parsed.len(), 1);
        let a = attrs(&parsed[0].2[16..]);
        assert_eq!(
            a,
            vec![
                (IFLA_MTU, &1500u32.to_ne_bytes()[..]),
                (IFLA_IFNAME, &b"eth0\0"[..])
            ]
        );
    }

    #[test]
    fn lists_the_hosts_links() {
        let links = Netlink::open().unwrap().links().unwrap();
        assert!(
            links.iter().any(|l| l.name == "lo" && l.index > 0),
            "{links:?}"
        );
    }
}
