//! The host's side of a network by rtnetlink: the bridge with the gateway
//! address, taps joined to it, and the routes a new subnet must not shadow.

use std::net::{IpAddr, Ipv4Addr};

use futures_util::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute};
use rtnetlink::{Handle, LinkBridge, LinkUnspec, RouteMessageBuilder};

use super::NetworkError;

/// MTU of bridges and taps (and the guests' eth0).
pub const MTU: u32 = 1500;

/// A route of the host's main table.
#[derive(Debug, Clone)]
pub struct HostRoute {
    pub net: Ipv4Net,
    pub device: String,
}

fn nl(e: impl std::fmt::Display) -> NetworkError {
    NetworkError::Netlink(e.to_string())
}

/// Runs `f` with a netlink handle on a runtime of its own (callers may be
/// inside or outside one).
fn with_handle<T: Send + 'static>(
    f: impl FnOnce(Handle) -> futures_util::future::BoxFuture<'static, Result<T, NetworkError>>
        + Send
        + 'static,
) -> Result<T, NetworkError> {
    let run = move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(|e| NetworkError::Netlink(format!("runtime: {e}")))?;
        rt.block_on(async move {
            let (conn, handle, _) = rtnetlink::new_connection()
                .map_err(|e| NetworkError::Netlink(format!("opening a netlink socket: {e}")))?;
            let task = tokio::spawn(conn);
            let r = f(handle).await;
            task.abort();
            r
        })
    };
    if tokio::runtime::Handle::try_current().is_ok() {
        // A runtime cannot block inside another: a short-lived thread.
        std::thread::scope(|s| {
            s.spawn(run)
                .join()
                .unwrap_or_else(|_| Err(NetworkError::Netlink("netlink thread panicked".into())))
        })
    } else {
        run()
    }
}

async fn index_of(handle: &Handle, name: &str) -> Result<Option<u32>, NetworkError> {
    let mut links = handle.link().get().match_name(name.to_owned()).execute();
    match links.try_next().await {
        Ok(Some(m)) => Ok(Some(m.header.index)),
        Ok(None) => Ok(None),
        // ENODEV: no such link.
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
        Err(e) => Err(nl(e)),
    }
}

/// `r`, with "already exists" as success.
fn exists_is_ok(
    r: Result<(), rtnetlink::Error>,
    what: impl FnOnce() -> String,
) -> Result<(), NetworkError> {
    match r {
        Ok(()) => Ok(()),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => Ok(()),
        Err(e) => Err(NetworkError::Netlink(format!("{}: {e}", what()))),
    }
}

/// Makes the bridge `name` with `gateway/prefix` and brings it up. An existing
/// bridge gets its address and link state checked too: one made by a process
/// killed half-way is finished here.
pub fn ensure_bridge(name: &str, gateway: Ipv4Addr, prefix: u8) -> Result<(), NetworkError> {
    let name = name.to_owned();
    with_handle(move |h| {
        Box::pin(async move {
            if index_of(&h, &name).await?.is_none() {
                // EEXIST: made meanwhile by another monitor.
                let made = h
                    .link()
                    .add(LinkBridge::new(&name).mtu(MTU).build())
                    .execute()
                    .await;
                exists_is_ok(made, || format!("creating bridge {name}"))?;
            }
            let idx = index_of(&h, &name)
                .await?
                .ok_or_else(|| NetworkError::Netlink(format!("bridge {name} vanished")))?;
            let added = h
                .address()
                .add(idx, IpAddr::V4(gateway), prefix)
                .execute()
                .await;
            exists_is_ok(added, || format!("addressing bridge {name}"))?;
            h.link()
                .set(LinkUnspec::new_with_index(idx).up().build())
                .execute()
                .await
                .map_err(|e| NetworkError::Netlink(format!("bringing bridge {name} up: {e}")))
        })
    })
}

/// Joins the tap `tap` to `bridge` and brings it up.
pub fn attach(tap: &str, bridge: &str) -> Result<(), NetworkError> {
    let (tap, bridge) = (tap.to_owned(), bridge.to_owned());
    with_handle(move |h| {
        Box::pin(async move {
            let br = index_of(&h, &bridge)
                .await?
                .ok_or_else(|| NetworkError::Netlink(format!("bridge {bridge} is missing")))?;
            let t = index_of(&h, &tap)
                .await?
                .ok_or_else(|| NetworkError::Netlink(format!("tap {tap} is missing")))?;
            h.link()
                .set(
                    LinkUnspec::new_with_index(t)
                        .controller(br)
                        .mtu(MTU)
                        .up()
                        .build(),
                )
                .execute()
                .await
                .map_err(|e| NetworkError::Netlink(format!("joining {tap} to {bridge}: {e}")))
        })
    })
}

/// Deletes a link (bridge) if it exists.
pub fn delete(name: &str) -> Result<(), NetworkError> {
    let name = name.to_owned();
    with_handle(move |h| {
        Box::pin(async move {
            if let Some(idx) = index_of(&h, &name).await? {
                h.link()
                    .del(idx)
                    .execute()
                    .await
                    .map_err(|e| NetworkError::Netlink(format!("deleting {name}: {e}")))?;
            }
            Ok(())
        })
    })
}

/// Whether a link exists.
pub fn exists(name: &str) -> Result<bool, NetworkError> {
    let name = name.to_owned();
    with_handle(move |h| Box::pin(async move { Ok(index_of(&h, &name).await?.is_some()) }))
}

/// The IPv4 routes of the main table, with their devices' names.
pub fn host_routes() -> Result<Vec<HostRoute>, NetworkError> {
    with_handle(|h| {
        Box::pin(async move {
            let mut names = std::collections::HashMap::new();
            let mut links = h.link().get().execute();
            while let Some(l) = links.try_next().await.map_err(nl)? {
                for a in &l.attributes {
                    if let rtnetlink::packet_route::link::LinkAttribute::IfName(n) = a {
                        names.insert(l.header.index, n.clone());
                    }
                }
            }
            let mut out = Vec::new();
            let mut routes = h
                .route()
                .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
                .execute();
            while let Some(r) = routes.try_next().await.map_err(nl)? {
                if r.header.table != rtnetlink::packet_route::route::RouteHeader::RT_TABLE_MAIN {
                    continue;
                }
                let mut dst = Ipv4Addr::UNSPECIFIED;
                let mut dev = String::new();
                for a in &r.attributes {
                    match a {
                        RouteAttribute::Destination(RouteAddress::Inet(d)) => dst = *d,
                        RouteAttribute::Oif(i) => {
                            dev = names.get(i).cloned().unwrap_or_default();
                        }
                        _ => {}
                    }
                }
                if let Ok(net) = Ipv4Net::new(dst, r.header.destination_prefix_length) {
                    out.push(HostRoute { net, device: dev });
                }
            }
            Ok(out)
        })
    })
}
