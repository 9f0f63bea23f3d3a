//! Choosing the kernel modules the guest needs and their load order.
//!
//! Debian's image package ships no modules.dep (depmod runs at install time),
//! so dependencies come from each module's own `.modinfo` section
//! (`depends=a,b`). A dependency with no .ko file is built into the kernel.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What skiff-init loads, by module name. Their dependencies come along.
pub const WANTED: &[&str] = &[
    "virtio_mmio",
    "virtio_blk",
    "virtio_console",
    "virtio_net",
    "virtio_rng",
    "virtio_balloon",
    "vmw_vsock_virtio_transport",
    "9pnet_virtio",
    "9p",
    "overlay",
    // Debian's cloud kernel has no 9p (CONFIG_NET_9P unset); virtiofs is the
    // volume transport it does have.
    "virtiofs",
];

#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error("reading kernel module {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("kernel module {path} is not a valid ELF file: {source}")]
    Elf {
        path: PathBuf,
        source: super::elf::ElfError,
    },
    #[error("kernel module {0} has no .modinfo section")]
    NoModinfo(PathBuf),
    #[error("kernel modules depend on each other in a cycle ({0}); the module tree is broken")]
    Cycle(String),
    #[error("walking {path}: {source}")]
    Walk {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Module names treat `-` and `_` alike (as modprobe does).
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// `depends=` of a module's `.modinfo` (NUL-separated `key=value` strings).
pub fn depends_of(modinfo: &[u8]) -> Vec<String> {
    modinfo
        .split(|&b| b == 0)
        .filter_map(|kv| kv.strip_prefix(b"depends="))
        .flat_map(|v| {
            String::from_utf8_lossy(v)
                .split(',')
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|d| !d.is_empty())
        .map(|d| normalize(&d))
        .collect()
}

/// Reads the depends= list of the .ko at `path`.
pub fn read_depends(path: &Path) -> Result<Vec<String>, ModuleError> {
    let data = std::fs::read(path).map_err(|source| ModuleError::Read {
        path: path.into(),
        source,
    })?;
    let modinfo = super::elf::modinfo(&data)
        .map_err(|source| ModuleError::Elf {
            path: path.into(),
            source,
        })?
        .ok_or_else(|| ModuleError::NoModinfo(path.into()))?;
    Ok(depends_of(modinfo))
}

/// Every `*.ko` below `root`, by normalized module name.
pub fn index(root: &Path) -> Result<BTreeMap<String, PathBuf>, ModuleError> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|source| ModuleError::Walk {
            path: dir.clone(),
            source,
        })?;
        for e in entries {
            let e = e.map_err(|source| ModuleError::Walk {
                path: dir.clone(),
                source,
            })?;
            let ty = e.file_type().map_err(|source| ModuleError::Walk {
                path: e.path(),
                source,
            })?;
            let name = e.file_name();
            let name = name.to_string_lossy();
            if ty.is_dir() {
                stack.push(e.path());
            } else if let Some(stem) = name.strip_suffix(".ko") {
                out.insert(normalize(stem), e.path());
            }
        }
    }
    Ok(out)
}

/// The wanted modules that exist as .ko files, with their dependency closure,
/// ordered dependencies first. `deps` gives a module's dependencies;
/// `available` says whether a name is a .ko (otherwise it is built in and
/// skipped). Ties are broken by name so the order is reproducible.
pub fn load_order<F>(
    wanted: &[&str],
    available: &dyn Fn(&str) -> bool,
    mut deps: F,
) -> Result<Vec<String>, ModuleError>
where
    F: FnMut(&str) -> Result<Vec<String>, ModuleError>,
{
    // Collect the closure.
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut todo: Vec<String> = wanted
        .iter()
        .map(|w| normalize(w))
        .filter(|w| available(w))
        .collect();
    while let Some(m) = todo.pop() {
        if graph.contains_key(&m) {
            continue;
        }
        let ds: BTreeSet<String> = deps(&m)?.into_iter().filter(|d| available(d)).collect();
        todo.extend(ds.iter().filter(|d| !graph.contains_key(*d)).cloned());
        graph.insert(m, ds);
    }
    // Kahn's algorithm, smallest name first among the ready ones.
    let mut order = Vec::with_capacity(graph.len());
    let mut done: BTreeSet<String> = BTreeSet::new();
    while order.len() < graph.len() {
        let ready = graph
            .iter()
            .find(|(m, ds)| !done.contains(*m) && ds.iter().all(|d| done.contains(d)))
            .map(|(m, _)| m.clone());
        let Some(m) = ready else {
            let left: Vec<&str> = graph
                .keys()
                .filter(|m| !done.contains(*m))
                .map(String::as_str)
                .collect();
            return Err(ModuleError::Cycle(left.join(", ")));
        };
        done.insert(m.clone());
        order.push(m);
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depends_parses_modinfo() {
        let info = b"license=GPL\0depends=virtio,virtio_ring\0retpoline=Y\0name=virtio_mmio\0";
        assert_eq!(depends_of(info), ["virtio", "virtio_ring"]);
        assert!(depends_of(b"depends=\0name=x\0").is_empty());
        assert_eq!(depends_of(b"depends=a-b\0"), ["a_b"]);
    }

    #[test]
    fn topological_order_deps_first_builtins_skipped() {
        // Synthetic modinfo: names -> depends= (ext4-like "crc32c" is built in).
        let table: BTreeMap<&str, &[u8]> = BTreeMap::from([
            ("virtio_mmio", &b"depends=virtio,virtio_ring\0"[..]),
            ("virtio_blk", b"depends=virtio,virtio_ring\0"),
            ("virtio", b"depends=\0"),
            ("virtio_ring", b"depends=virtio\0"),
            ("9p", b"depends=9pnet,netfs,fscache\0"),
            ("9pnet", b"depends=\0"),
            ("9pnet_virtio", b"depends=9pnet,virtio_ring,virtio\0"),
            ("netfs", b"depends=\0"),
            ("overlay", b"depends=crc32c\0"),
        ]);
        let available = |m: &str| table.contains_key(m);
        let order = load_order(
            &[
                "virtio_mmio",
                "virtio_blk",
                "9pnet_virtio",
                "9p",
                "overlay",
                "virtio_rng",
            ],
            &available,
            |m| Ok(depends_of(table[m])),
        )
        .unwrap();
        let pos = |m: &str| {
            order
                .iter()
                .position(|x| x == m)
                .unwrap_or_else(|| panic!("{m} missing from {order:?}"))
        };
        assert!(pos("virtio") < pos("virtio_ring"));
        assert!(pos("virtio_ring") < pos("virtio_mmio"));
        assert!(pos("virtio_ring") < pos("virtio_blk"));
        assert!(pos("9pnet") < pos("9p") && pos("netfs") < pos("9p"));
        assert!(pos("9pnet") < pos("9pnet_virtio"));
        assert!(
            !order.contains(&"crc32c".to_string()) && !order.contains(&"virtio_rng".to_string())
        );
        assert_eq!(order.len(), 9);
    }

    #[test]
    fn cycles_are_reported() {
        let err = load_order(&["a"], &|_| true, |m| {
            Ok(vec![if m == "a" { "b" } else { "a" }.to_string()])
        })
        .unwrap_err();
        assert!(
            matches!(err, ModuleError::Cycle(ref s) if s == "a, b"),
            "{err}"
        );
    }
}
