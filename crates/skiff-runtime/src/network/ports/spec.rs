//! The `-p`/`-P` grammar: docker's publish specs and an image's ExposedPorts
//! keys, parsed into [`PortMapping`]s.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

/// The form of a `-p` spec, quoted in its error messages.
const PUBLISH_FORM: &str = "[hostIP:]hostPort[-range]:containerPort[/tcp|udp]";

/// The form of an image's ExposedPorts key, quoted in its error messages.
const EXPOSED_FORM: &str = "port[-range][/tcp|udp]";

/// Transport protocol of a published port; the two that docker's `-p` and an
/// image's ExposedPorts name (sctp is not supported).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP (the default when a spec names none).
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Protocol {
    type Err = PortSpecError;

    /// `tcp` or `udp` (any case), as after the `/` of a port spec.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("tcp") {
            Ok(Protocol::Tcp)
        } else if s.eq_ignore_ascii_case("udp") {
            Ok(Protocol::Udp)
        } else {
            Err(PortSpecError::UnknownProtocol {
                protocol: s.to_owned(),
            })
        }
    }
}

/// One published port. host_port 0 = any free port (chosen at bind).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PortMapping {
    /// Host address to listen on; 0.0.0.0 when the spec names none.
    pub host_ip: IpAddr,
    /// Host port; 0 until bound when the spec leaves it to the system.
    pub host_port: u16,
    /// Port inside the container that connections are forwarded to.
    pub container_port: u16,
    /// TCP or UDP.
    pub protocol: Protocol,
}

/// A `-p` spec or an ExposedPorts key that cannot be used; every message
/// quotes the spec and says what was expected, so the CLI can print it as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortSpecError {
    /// The spec does not have the shape of a `-p` value.
    #[error("invalid port {spec:?}: use {PUBLISH_FORM}")]
    Invalid {
        /// The spec as given.
        spec: String,
    },
    /// The key does not have the shape of an ExposedPorts key.
    #[error("invalid exposed port {spec:?}: use {EXPOSED_FORM}")]
    Exposed {
        /// The key as given.
        spec: String,
    },
    /// The host IP before the host port is not an IP address.
    #[error(
        "invalid host IP {ip:?} in port {spec:?}: use an IPv4 address or an IPv6 address \
         in brackets, e.g. 127.0.0.1:8080:80 or [::1]:8080:80"
    )]
    HostIp {
        /// The spec as given.
        spec: String,
        /// The host IP part of it.
        ip: String,
    },
    /// The protocol after `/` is neither tcp nor udp.
    #[error("invalid protocol {protocol:?} in port {spec:?}: use tcp or udp")]
    Protocol {
        /// The spec as given.
        spec: String,
        /// The protocol part of it.
        protocol: String,
    },
    /// A protocol name on its own that is neither tcp nor udp.
    #[error("invalid protocol {protocol:?}: use tcp or udp")]
    UnknownProtocol {
        /// The name as given.
        protocol: String,
    },
    /// A port number outside 1-65535 (a single host port may be 0: any port).
    #[error("invalid port number {port:?} in port {spec:?}: ports are 1-65535")]
    PortNumber {
        /// The spec as given.
        spec: String,
        /// The offending number as written.
        port: String,
    },
    /// A range whose start is after its end.
    #[error("invalid port range {range:?} in port {spec:?}: use start-end with start <= end")]
    Range {
        /// The spec as given.
        spec: String,
        /// The offending range as written.
        range: String,
    },
    /// Host and container ranges of different lengths (docker would pick one
    /// host port out of a host range for a single container port; skiff
    /// maps ports one to one).
    #[error(
        "port ranges in {spec:?} differ in length: host and container ranges must be \
         equal length, e.g. 8080-8081:80-81"
    )]
    RangeLength {
        /// The spec as given.
        spec: String,
    },
}

/// docker's -p grammar: "80" (container port, any host port), "8080:80",
/// "127.0.0.1:8080:80", "127.0.0.1::80" (any host port on that ip),
/// "8080-8081:80-81" (equal-length ranges), "80-81" (container range, any host
/// ports), "8080:80/udp", "[::1]:8080:80" (IPv6 host ip in brackets).
///
/// A host range must be as long as the container range (docker's "8000-8010:80",
/// one port out of the range, is rejected). Container ports are 1-65535; a
/// single host port may be 0 (any free port).
pub fn parse_publish(spec: &str) -> Result<Vec<PortMapping>, PortSpecError> {
    let invalid = || PortSpecError::Invalid {
        spec: spec.to_owned(),
    };
    let (rest, protocol) = split_protocol(spec)?;
    let (ip, host, container) = split_publish(rest).ok_or_else(invalid)?;

    let host_ip = match ip {
        None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        Some(ip) => ip.parse().map_err(|_| PortSpecError::HostIp {
            spec: spec.to_owned(),
            ip: ip.to_owned(),
        })?,
    };
    if container.is_empty() {
        return Err(invalid());
    }
    let (c_start, c_end) = parse_range(spec, container, false, invalid)?;
    let host = if host.is_empty() {
        None
    } else {
        let (h_start, h_end) = parse_range(spec, host, true, invalid)?;
        if h_end - h_start != c_end - c_start {
            return Err(PortSpecError::RangeLength {
                spec: spec.to_owned(),
            });
        }
        Some(h_start)
    };

    Ok((c_start..=c_end)
        .map(|container_port| PortMapping {
            host_ip,
            // Equal lengths were checked: h_start + offset stays <= h_end.
            host_port: host.map_or(0, |h| h + (container_port - c_start)),
            container_port,
            protocol,
        })
        .collect())
}

/// An image's ExposedPorts key: "80/tcp", "53/udp", "8080" (tcp),
/// "7000-7002/tcp" -> (port, protocol) list; `-P` publishes each of them on
/// any free host port.
pub fn parse_exposed(key: &str) -> Result<Vec<(u16, Protocol)>, PortSpecError> {
    let invalid = || PortSpecError::Exposed {
        spec: key.to_owned(),
    };
    let (ports, protocol) = split_protocol(key)?;
    if ports.is_empty() {
        return Err(invalid());
    }
    let (start, end) = parse_range(key, ports, false, invalid)?;
    Ok((start..=end).map(|port| (port, protocol)).collect())
}

/// Splits an optional `/tcp` or `/udp` off the end of `spec` (tcp when absent).
fn split_protocol(spec: &str) -> Result<(&str, Protocol), PortSpecError> {
    match spec.rsplit_once('/') {
        None => Ok((spec, Protocol::Tcp)),
        Some((rest, name)) => match name.parse() {
            Ok(protocol) => Ok((rest, protocol)),
            Err(_) => Err(PortSpecError::Protocol {
                spec: spec.to_owned(),
                protocol: name.to_owned(),
            }),
        },
    }
}

/// `[ip:]host:container`, `container`, or `[v6]:host:container` → (ip, host,
/// container); host and container possibly empty, ip `None` when not given
/// (an empty ip before `::` is not given; `[]` is given and empty). Like
/// docker, an unbracketed IPv6 address is everything before the last two
/// colons.
fn split_publish(rest: &str) -> Option<(Option<&str>, &str, &str)> {
    if let Some(bracketed) = rest.strip_prefix('[') {
        let (ip, ports) = bracketed.split_once("]:")?;
        let (host, container) = ports.split_once(':')?;
        if container.contains(':') {
            return None;
        }
        return Some((Some(ip), host, container));
    }
    match rest.rsplit_once(':') {
        None => Some((None, "", rest)),
        Some((front, container)) => match front.rsplit_once(':') {
            None => Some((None, front, container)),
            Some(("", host)) => Some((None, host, container)),
            Some((ip, host)) => Some((Some(ip), host, container)),
        },
    }
}

/// `N` or `N-M` → (N, M). Port 0 only when `allow_any` and the text is a single
/// port (host port 0 = any); shape errors come from `invalid`.
fn parse_range(
    spec: &str,
    text: &str,
    allow_any: bool,
    invalid: impl Fn() -> PortSpecError,
) -> Result<(u16, u16), PortSpecError> {
    let number = |part: &str, zero_ok: bool| -> Result<u16, PortSpecError> {
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        match part.parse::<u16>() {
            Ok(0) if !zero_ok => Err(PortSpecError::PortNumber {
                spec: spec.to_owned(),
                port: part.to_owned(),
            }),
            Ok(port) => Ok(port),
            Err(_) => Err(PortSpecError::PortNumber {
                spec: spec.to_owned(),
                port: part.to_owned(),
            }),
        }
    };
    match text.split_once('-') {
        None => {
            let port = number(text, allow_any)?;
            Ok((port, port))
        }
        Some((start, end)) => {
            let start_port = number(start, false)?;
            let end_port = number(end, false)?;
            if start_port > end_port {
                return Err(PortSpecError::Range {
                    spec: spec.to_owned(),
                    range: text.to_owned(),
                });
            }
            Ok((start_port, end_port))
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    pub(crate) const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    pub(crate) const ANY: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

    /// A mapping, for tests here and in publish.rs.
    pub(crate) fn m(
        host_ip: IpAddr,
        host_port: u16,
        container_port: u16,
        protocol: Protocol,
    ) -> PortMapping {
        PortMapping {
            host_ip,
            host_port,
            container_port,
            protocol,
        }
    }

    #[test]
    fn protocol_text() {
        assert_eq!(Protocol::Tcp.to_string(), "tcp");
        assert_eq!(Protocol::Udp.to_string(), "udp");
        assert_eq!("udp".parse::<Protocol>(), Ok(Protocol::Udp));
        assert_eq!("TCP".parse::<Protocol>(), Ok(Protocol::Tcp));
        let err = "sctp".parse::<Protocol>().unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"invalid protocol "sctp": use tcp or udp"#
        );
        assert_eq!(serde_json::to_string(&Protocol::Udp).unwrap(), r#""udp""#);
        let mapping = m(LOCAL, 8080, 80, Protocol::Tcp);
        let json = serde_json::to_string(&mapping).unwrap();
        assert_eq!(
            json,
            r#"{"host_ip":"127.0.0.1","host_port":8080,"container_port":80,"protocol":"tcp"}"#
        );
        assert_eq!(serde_json::from_str::<PortMapping>(&json).unwrap(), mapping);
    }

    #[test]
    fn publish_good() {
        use Protocol::{Tcp, Udp};
        let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        let cases: Vec<(&str, Vec<PortMapping>)> = vec![
            ("80", vec![m(ANY, 0, 80, Tcp)]),
            ("8080:80", vec![m(ANY, 8080, 80, Tcp)]),
            ("0:80", vec![m(ANY, 0, 80, Tcp)]),
            ("127.0.0.1:8080:80", vec![m(LOCAL, 8080, 80, Tcp)]),
            ("127.0.0.1::80", vec![m(LOCAL, 0, 80, Tcp)]),
            ("::80", vec![m(ANY, 0, 80, Tcp)]),
            (
                "8080-8081:80-81",
                vec![m(ANY, 8080, 80, Tcp), m(ANY, 8081, 81, Tcp)],
            ),
            ("80-81", vec![m(ANY, 0, 80, Tcp), m(ANY, 0, 81, Tcp)]),
            ("8080:80/udp", vec![m(ANY, 8080, 80, Udp)]),
            ("8080:80/tcp", vec![m(ANY, 8080, 80, Tcp)]),
            ("53/udp", vec![m(ANY, 0, 53, Udp)]),
            ("[::1]:8080:80", vec![m(v6, 8080, 80, Tcp)]),
            ("[::1]::80/udp", vec![m(v6, 0, 80, Udp)]),
            ("::1:8080:80", vec![m(v6, 8080, 80, Tcp)]),
            ("[127.0.0.1]:8080:80", vec![m(LOCAL, 8080, 80, Tcp)]),
            (
                "127.0.0.1:7000-7002:8000-8002/udp",
                vec![
                    m(LOCAL, 7000, 8000, Udp),
                    m(LOCAL, 7001, 8001, Udp),
                    m(LOCAL, 7002, 8002, Udp),
                ],
            ),
            ("65535:65535", vec![m(ANY, 65535, 65535, Tcp)]),
            ("65535-65535:1-1", vec![m(ANY, 65535, 1, Tcp)]),
            ("080:080", vec![m(ANY, 80, 80, Tcp)]),
        ];
        for (spec, want) in cases {
            assert_eq!(parse_publish(spec), Ok(want), "{spec}");
        }
        assert_eq!(parse_publish("1-65535").map(|v| v.len()), Ok(65535));
    }

    #[test]
    fn publish_bad() {
        let invalid = |s: &str| PortSpecError::Invalid { spec: s.into() };
        let number = |s: &str, p: &str| PortSpecError::PortNumber {
            spec: s.into(),
            port: p.into(),
        };
        let length = |s: &str| PortSpecError::RangeLength { spec: s.into() };
        let host_ip = |s: &str, ip: &str| PortSpecError::HostIp {
            spec: s.into(),
            ip: ip.into(),
        };
        let protocol = |s: &str, p: &str| PortSpecError::Protocol {
            spec: s.into(),
            protocol: p.into(),
        };
        let range = |s: &str, r: &str| PortSpecError::Range {
            spec: s.into(),
            range: r.into(),
        };
        let cases = vec![
            ("", invalid("")),
            ("x", invalid("x")),
            ("80:x", invalid("80:x")),
            ("x:80", invalid("x:80")),
            ("8080:", invalid("8080:")),
            ("127.0.0.1:8080:", invalid("127.0.0.1:8080:")),
            (" 80", invalid(" 80")),
            ("+80", invalid("+80")),
            ("80-", invalid("80-")),
            ("-80", invalid("-80")),
            ("80-81-82", invalid("80-81-82")),
            ("[::1]:80", invalid("[::1]:80")),
            ("[::1:8080:80", invalid("[::1:8080:80")),
            ("[::1]:8080:80:90", invalid("[::1]:8080:80:90")),
            ("0", number("0", "0")),
            ("8080:0", number("8080:0", "0")),
            ("65536", number("65536", "65536")),
            ("70000:80", number("70000:80", "70000")),
            ("0-5:80-85", number("0-5:80-85", "0")),
            ("0-1", number("0-1", "0")),
            ("8000-8010:80", length("8000-8010:80")),
            ("8080:80-81", length("8080:80-81")),
            ("0:80-81", length("0:80-81")),
            ("8080-8082:80-81", length("8080-8082:80-81")),
            ("81-80", range("81-80", "81-80")),
            ("9-8:80-81", range("9-8:80-81", "9-8")),
            ("80/sctp", protocol("80/sctp", "sctp")),
            ("80/", protocol("80/", "")),
            ("80/tcp/udp", invalid("80/tcp/udp")),
            ("1.2.3:80:80", host_ip("1.2.3:80:80", "1.2.3")),
            ("a:b:c", host_ip("a:b:c", "a")),
            ("80:80:80:80", host_ip("80:80:80:80", "80:80")),
            ("[]:80:80", host_ip("[]:80:80", "")),
            ("localhost:80:80", host_ip("localhost:80:80", "localhost")),
        ];
        for (spec, want) in cases {
            assert_eq!(parse_publish(spec), Err(want), "{spec}");
        }

        let msg = |s: &str| parse_publish(s).unwrap_err().to_string();
        assert_eq!(
            msg("80:x"),
            r#"invalid port "80:x": use [hostIP:]hostPort[-range]:containerPort[/tcp|udp]"#
        );
        assert_eq!(
            msg("8000-8010:80"),
            r#"port ranges in "8000-8010:80" differ in length: host and container ranges must be equal length, e.g. 8080-8081:80-81"#
        );
        assert_eq!(
            msg("8080:0"),
            r#"invalid port number "0" in port "8080:0": ports are 1-65535"#
        );
        assert_eq!(
            msg("80/sctp"),
            r#"invalid protocol "sctp" in port "80/sctp": use tcp or udp"#
        );
        assert_eq!(
            msg("81-80"),
            r#"invalid port range "81-80" in port "81-80": use start-end with start <= end"#
        );
        assert!(
            msg("1.2.3:80:80").starts_with(r#"invalid host IP "1.2.3" in port "1.2.3:80:80": "#)
        );
        for spec in ["", "80:x", "0", "81-80", "80/x", "x:1:2", "1-2:3"] {
            assert!(!msg(spec).contains('\n'), "{spec}");
        }
    }

    #[test]
    fn exposed() {
        use Protocol::{Tcp, Udp};
        assert_eq!(parse_exposed("80/tcp"), Ok(vec![(80, Tcp)]));
        assert_eq!(parse_exposed("53/udp"), Ok(vec![(53, Udp)]));
        assert_eq!(parse_exposed("8080"), Ok(vec![(8080, Tcp)]));
        assert_eq!(
            parse_exposed("7000-7002/tcp"),
            Ok(vec![(7000, Tcp), (7001, Tcp), (7002, Tcp)])
        );
        let exposed = |s: &str| PortSpecError::Exposed { spec: s.into() };
        assert_eq!(parse_exposed(""), Err(exposed("")));
        assert_eq!(parse_exposed("/tcp"), Err(exposed("/tcp")));
        assert_eq!(parse_exposed("x/tcp"), Err(exposed("x/tcp")));
        assert_eq!(parse_exposed("80/tcp/udp"), Err(exposed("80/tcp/udp")));
        assert_eq!(parse_exposed("8080:80"), Err(exposed("8080:80")));
        assert_eq!(
            parse_exposed("0/tcp"),
            Err(PortSpecError::PortNumber {
                spec: "0/tcp".into(),
                port: "0".into()
            })
        );
        assert_eq!(
            parse_exposed("7002-7000/udp"),
            Err(PortSpecError::Range {
                spec: "7002-7000/udp".into(),
                range: "7002-7000".into()
            })
        );
        assert_eq!(
            parse_exposed("132/sctp"),
            Err(PortSpecError::Protocol {
                spec: "132/sctp".into(),
                protocol: "sctp".into()
            })
        );
        assert_eq!(
            parse_exposed("x").unwrap_err().to_string(),
            r#"invalid exposed port "x": use port[-range][/tcp|udp]"#
        );
    }
}
