//! Property test: random layer stacks (files, directories, symlinks, hard
//! links, FIFOs, whiteouts, opaque directories, replacements of one type by
//! another, implicit parents, xattrs, odd modes and owners, gzip/zstd) →
//! build → `e2fsck -fn` clean → equal to GNU tar's extraction.
//!
//! Each case mounts an image and runs tar, so the default is 24 cases;
//! `PROPTEST_CASES=500 cargo test --test prop_layers` runs more.
//!
//! Layers are generated from a model of the tree so that they are valid
//! (parents are directories, hard-link targets exist) and follow the OCI
//! spec's advice (whiteouts first in a layer; nothing written twice in one
//! layer), where every correct implementation must agree.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

#[derive(Debug, Clone)]
enum Op {
    File { path: u8, content: u8, meta: u8 },
    Dir { path: u8, meta: u8 },
    Symlink { path: u8, target: u8 },
    Hardlink { path: u8, target: u8 },
    Fifo { path: u8, meta: u8 },
    Whiteout { pick: u8 },
    Opaque { pick: u8 },
}

#[derive(Debug, Clone)]
struct LayerSpec {
    ops: Vec<Op>,
    wrap: u8,
    /// Emit entries for existing parent directories (as real layers do).
    parent_headers: bool,
    /// Leave missing parents to be created implicitly.
    implicit_parents: bool,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (any::<u8>(), any::<u8>(), any::<u8>())
            .prop_map(|(path, content, meta)| Op::File { path, content, meta }),
        3 => (any::<u8>(), any::<u8>()).prop_map(|(path, meta)| Op::Dir { path, meta }),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(path, target)| Op::Symlink { path, target }),
        2 => (any::<u8>(), any::<u8>()).prop_map(|(path, target)| Op::Hardlink { path, target }),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(path, meta)| Op::Fifo { path, meta }),
        2 => any::<u8>().prop_map(|pick| Op::Whiteout { pick }),
        1 => any::<u8>().prop_map(|pick| Op::Opaque { pick }),
    ]
}

fn layer_spec() -> impl Strategy<Value = LayerSpec> {
    (
        prop::collection::vec(op(), 0..14),
        0u8..3,
        any::<bool>(),
        prop::bool::weighted(0.2),
    )
        .prop_map(|(ops, wrap, parent_headers, implicit_parents)| LayerSpec {
            ops,
            wrap,
            parent_headers,
            implicit_parents,
        })
}

/// Every path of depth 1 to 3 over the names a, b, c.
fn namespace() -> Vec<Vec<String>> {
    let names = ["a", "b", "c"];
    let mut out: Vec<Vec<String>> = Vec::new();
    for x in names {
        out.push(vec![x.into()]);
        for y in names {
            out.push(vec![x.into(), y.into()]);
            for z in names {
                out.push(vec![x.into(), y.into(), z.into()]);
            }
        }
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MKind {
    Dir,
    File,
    Other,
}

type P = Vec<String>;

fn s(p: &P) -> String {
    p.join("/")
}

fn is_under(p: &P, root: &P) -> bool {
    p.len() >= root.len() && p[..root.len()] == root[..]
}

fn file_meta(i: u8, seq: usize) -> M {
    let modes = [0o644, 0o755, 0o4755, 0o2755, 0o1644, 0o600, 0o000, 0o6777];
    let ids = [0u64, 1000, 65_536, 4_000_000_000];
    let mut m = M::mode(modes[(i % 8) as usize])
        .owner(ids[(i / 8 % 4) as usize], ids[(i / 32 % 4) as usize])
        .time(
            T0 + seq as i64,
            (i & 1 == 1).then_some(seq as u32 * 7919 % 1_000_000_000),
        );
    match i / 128 {
        0 => {}
        _ => match seq % 4 {
            0 => m = m.xattr("user.small", b"v"),
            1 => m = m.xattr("user.big", &noise(2000, 77)),
            2 => m = m.xattr("security.capability", &CAP),
            _ => m = m.xattr("trusted.t", format!("{seq}").as_bytes()),
        },
    }
    m
}

fn dir_meta(i: u8, seq: usize) -> M {
    let modes = [0o755, 0o700, 0o1777, 0o2755, 0o555, 0o750];
    let mut m = file_meta(i, seq);
    m.mode = modes[(i % 6) as usize];
    // The kernel takes security.capability on regular files only.
    m.xattrs.retain(|(k, _)| k != "security.capability");
    m
}

const CAP: [u8; 20] = [
    0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

fn content(i: u8) -> Vec<u8> {
    match i % 6 {
        0 => Vec::new(),
        1 => b"hello\n".to_vec(),
        2 => noise(5000, i as u64),
        3 => [vec![0u8; 8192], b"after a hole".to_vec()].concat(),
        4 => [noise(4096, 1), vec![0u8; 4096], noise(10, 2)].concat(),
        _ => noise(70_000, i as u64),
    }
}

const TARGETS: [&str; 5] = [
    "a",
    "../b",
    "/abs/x",
    "c/d/e",
    "a-long-target-that-does-not-fit-in-the-inode-so-it-takes-a-block",
];

/// Turns specs into valid layers (and records what the reference needs).
fn interpret(specs: &[LayerSpec]) -> Vec<(Layer, Wrap)> {
    let ns = namespace();
    let mut model: BTreeMap<P, MKind> = BTreeMap::new();
    let mut out = Vec::new();
    let mut seq = 0usize;
    for spec in specs {
        let mut b = LayerBuilder::new();
        // Phase 1: whiteouts and opaque markers, against lower layers.
        for op in &spec.ops {
            match op {
                Op::Whiteout { pick } => {
                    let keys: Vec<P> = model.keys().cloned().collect();
                    if keys.is_empty() {
                        continue;
                    }
                    let p = keys[*pick as usize % keys.len()].clone();
                    b.whiteout(s(&p));
                    model.retain(|k, _| !is_under(k, &p));
                }
                Op::Opaque { pick } => {
                    let mut dirs: Vec<P> = vec![Vec::new()];
                    dirs.extend(
                        model
                            .iter()
                            .filter(|(_, k)| **k == MKind::Dir)
                            .map(|(p, _)| p.clone()),
                    );
                    let d = dirs[*pick as usize % dirs.len()].clone();
                    b.opaque(s(&d));
                    model.retain(|k, _| !(is_under(k, &d) && k.len() > d.len()));
                }
                _ => {}
            }
        }
        // Phase 2: everything else.
        let mut touched: BTreeMap<P, MKind> = BTreeMap::new();
        let mut link_targets: BTreeSet<P> = BTreeSet::new();
        for op in &spec.ops {
            seq += 1;
            let (path, kind) = match op {
                Op::File { path, .. } | Op::Hardlink { path, .. } => (*path, MKind::File),
                Op::Dir { path, .. } => (*path, MKind::Dir),
                Op::Symlink { path, .. } | Op::Fifo { path, .. } => (*path, MKind::Other),
                Op::Whiteout { .. } | Op::Opaque { .. } => continue,
            };
            let p = ns[path as usize % ns.len()].clone();
            // Nothing twice in a layer; never replace what this layer wrote
            // or what a hard link of this layer points into.
            if touched.keys().any(|t| is_under(t, &p)) {
                continue;
            }
            let replaces = model
                .get(&p)
                .is_some_and(|k| (*k == MKind::Dir) != (kind == MKind::Dir));
            if replaces && link_targets.iter().any(|t| is_under(t, &p)) {
                continue;
            }
            let mut blocked = false;
            for i in 1..p.len() {
                let a = p[..i].to_vec();
                match touched.get(&a) {
                    Some(MKind::Dir) => continue,
                    Some(_) => {
                        blocked = true;
                        break;
                    }
                    None => {}
                }
                // A file on the way is replaced by a directory: not if a
                // hard link of this layer points at it.
                if model.get(&a).is_some_and(|k| *k != MKind::Dir) && link_targets.contains(&a) {
                    blocked = true;
                    break;
                }
            }
            if blocked {
                continue;
            }
            // Hard-link target: an existing regular file (not at p).
            let target = if let Op::Hardlink { target, .. } = op {
                let files: Vec<P> = model
                    .iter()
                    .filter(|(k, kind)| {
                        **kind == MKind::File && !is_under(k, &p) && !is_under(&p, k)
                    })
                    .map(|(k, _)| k.clone())
                    .collect();
                if files.is_empty() {
                    continue;
                }
                Some(files[*target as usize % files.len()].clone())
            } else {
                None
            };
            // Parents.
            for i in 1..p.len() {
                let a = p[..i].to_vec();
                if touched.contains_key(&a) {
                    continue;
                }
                match model.get(&a) {
                    Some(MKind::Dir) => {
                        if spec.parent_headers {
                            b.dir(s(&a), &dir_meta(seq as u8, seq));
                            touched.insert(a.clone(), MKind::Dir);
                        }
                    }
                    None if spec.implicit_parents => {
                        model.insert(a.clone(), MKind::Dir);
                    }
                    _ => {
                        b.dir(s(&a), &dir_meta(seq as u8 ^ 0x55, seq));
                        model.insert(a.clone(), MKind::Dir);
                        touched.insert(a.clone(), MKind::Dir);
                    }
                }
            }
            if replaces {
                model.retain(|k, _| !is_under(k, &p));
            }
            match op {
                Op::File {
                    content: c, meta, ..
                } => {
                    b.file(s(&p), &content(*c), &file_meta(*meta, seq));
                }
                Op::Dir { meta, .. } => {
                    b.dir(s(&p), &dir_meta(*meta, seq));
                }
                Op::Symlink { target, .. } => {
                    b.symlink(
                        s(&p),
                        TARGETS[*target as usize % TARGETS.len()],
                        &M::default().time(T0, Some(seq as u32)),
                    );
                }
                Op::Fifo { meta, .. } => {
                    b.fifo(s(&p), &file_meta(*meta % 128, seq));
                }
                Op::Hardlink { .. } => {
                    let t = target.unwrap();
                    b.hardlink(s(&p), s(&t));
                    link_targets.insert(t);
                }
                Op::Whiteout { .. } | Op::Opaque { .. } => unreachable!(),
            }
            model.insert(p.clone(), kind);
            touched.insert(p, kind);
        }
        let wrap = [Wrap::Plain, Wrap::Gzip, Wrap::Zstd][spec.wrap as usize % 3];
        out.push((b.finish(), wrap));
    }
    out
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        max_shrink_iters: 200,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/proptest-regressions/prop_layers.txt",
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_layer_stacks_match_the_reference(specs in prop::collection::vec(layer_spec(), 1..5)) {
        let layers = interpret(&specs);
        let refs: Vec<(&Layer, Wrap)> = layers.iter().map(|(l, w)| (l, *w)).collect();
        roundtrip(&refs, &opts());
    }
}
