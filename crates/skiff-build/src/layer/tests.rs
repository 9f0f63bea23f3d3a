use std::io::Read;

use sha2::{Digest as _, Sha256};

use super::tarread::TarReader;
use super::writer::Raw;
use super::*;

fn hex_sha(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn decompress(bytes: &[u8], c: Compression) -> Vec<u8> {
    let mut out = Vec::new();
    match c {
        Compression::Gzip => {
            flate2::read::GzDecoder::new(bytes)
                .read_to_end(&mut out)
                .unwrap();
        }
        Compression::Zstd => {
            zstd::stream::read::Decoder::new(bytes)
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
        }
        Compression::Uncompressed => out = bytes.to_vec(),
    }
    out
}

fn file(path: &str, size: u64, mtime: u64) -> EntryMeta {
    EntryMeta {
        path: path.into(),
        kind: EntryKind::File { size },
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime,
    }
}

/// A small layer: a directory, a file, a long-named file, a symlink with a
/// long target, a hard link.
fn sample(c: Compression, epoch: Option<u64>, mtime: u64) -> (Vec<u8>, LayerDigests) {
    let mut w = LayerWriter::new(Vec::new(), c, epoch).unwrap();
    let dir = EntryMeta {
        path: "/app".into(),
        kind: EntryKind::Dir,
        mode: 0o755,
        uid: 1000,
        gid: 1000,
        mtime,
    };
    w.append(&dir, None).unwrap();
    let body = b"hello, layer\n".repeat(1000);
    w.append(
        &file("/app/hello.txt", body.len() as u64, mtime),
        Some(&mut &body[..]),
    )
    .unwrap();
    let long = format!("/app/{}/f", "d".repeat(150));
    w.append(&file(&long, 3, mtime), Some(&mut &b"abc"[..]))
        .unwrap();
    let link = EntryMeta {
        path: "/app/link".into(),
        kind: EntryKind::Symlink(format!("/{}", "t".repeat(120))),
        mode: 0o777,
        uid: 0,
        gid: 0,
        mtime,
    };
    w.append(&link, None).unwrap();
    let hard = EntryMeta {
        path: "/app/hard".into(),
        kind: EntryKind::Hardlink("/app/hello.txt".into()),
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime,
    };
    w.append(&hard, None).unwrap();
    let (out, d) = w.finish().unwrap();
    (out, d)
}

#[test]
fn identical_bytes_with_an_epoch() {
    for c in [
        Compression::Gzip,
        Compression::Zstd,
        Compression::Uncompressed,
    ] {
        // Different mtimes above the epoch: clamped, so the same bytes.
        let (a, da) = sample(c, Some(1_700_000_000), 1_800_000_000);
        let (b, db) = sample(c, Some(1_700_000_000), 1_900_000_000);
        assert_eq!(a, b, "{c:?}");
        assert_eq!(da, db);
        // Without the epoch the mtimes show.
        let (x, _) = sample(c, None, 1_800_000_000);
        let (y, _) = sample(c, None, 1_900_000_000);
        assert_ne!(x, y, "{c:?}");
    }
}

#[test]
fn gzip_header_carries_no_time() {
    let (a, _) = sample(Compression::Gzip, Some(0), 5);
    assert_eq!(&a[..4], &[0x1f, 0x8b, 8, 0]);
    assert_eq!(&a[4..8], &[0, 0, 0, 0], "mtime");
    assert_eq!(a[9], 255, "OS byte");
}

#[test]
fn digests_are_right() {
    for c in [
        Compression::Gzip,
        Compression::Zstd,
        Compression::Uncompressed,
    ] {
        let (bytes, d) = sample(c, None, 1_000);
        let tar = decompress(&bytes, c);
        assert_eq!(d.diff_id.to_string(), hex_sha(&tar), "{c:?}");
        assert_eq!(d.digest.to_string(), hex_sha(&bytes), "{c:?}");
        assert_eq!(d.size, bytes.len() as u64);
        assert_eq!(d.media_type, c.media_type());
        assert_eq!(tar.len() % 512, 0);
        assert!(tar.ends_with(&[0u8; 1024]));
    }
    assert_eq!(
        Compression::Zstd.media_type(),
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
}

#[test]
fn entries_read_back_with_the_tar_crate() {
    let (bytes, _) = sample(Compression::Gzip, Some(2_000), 1_000);
    let tar = decompress(&bytes, Compression::Gzip);
    let mut ar = tar::Archive::new(&tar[..]);
    let mut seen = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let h = e.header().clone();
        let path = String::from_utf8(e.path_bytes().into_owned()).unwrap();
        let link = e
            .link_name_bytes()
            .map(|l| String::from_utf8(l.into_owned()).unwrap());
        assert_eq!(h.mtime().unwrap(), 1_000, "below the epoch: kept");
        assert_eq!(h.username_bytes(), Some(&b""[..]));
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        seen.push((path, h.entry_type(), h.uid().unwrap(), link, data.len()));
    }
    let long = format!("app/{}/f", "d".repeat(150));
    let target = format!("/{}", "t".repeat(120));
    assert_eq!(
        seen,
        [
            ("app/".to_string(), tar::EntryType::Directory, 1000, None, 0),
            (
                "app/hello.txt".to_string(),
                tar::EntryType::Regular,
                0,
                None,
                13000
            ),
            (long, tar::EntryType::Regular, 0, None, 3),
            (
                "app/link".to_string(),
                tar::EntryType::Symlink,
                0,
                Some(target),
                0
            ),
            (
                "app/hard".to_string(),
                tar::EntryType::Link,
                0,
                Some("app/hello.txt".to_string()),
                0
            ),
        ]
    );
}

#[test]
fn mtime_clamped_to_the_epoch() {
    let (bytes, _) = sample(Compression::Uncompressed, Some(1_500), 9_999);
    let mut ar = tar::Archive::new(&bytes[..]);
    for e in ar.entries().unwrap() {
        assert_eq!(e.unwrap().header().mtime().unwrap(), 1_500);
    }
}

#[test]
fn append_refuses_bad_entries() {
    let mut w = LayerWriter::new(Vec::new(), Compression::Uncompressed, None).unwrap();
    let err = w
        .append(&file("/a/../../etc/x", 0, 0), Some(&mut &b""[..]))
        .unwrap_err();
    assert!(err.to_string().contains("'..'"), "{err}");
    // Data shorter than the size: an error, not a corrupt tar.
    let err = w
        .append(&file("/short", 10, 0), Some(&mut &b"abc"[..]))
        .unwrap_err();
    assert!(matches!(err, LayerError::Changed { .. }), "{err}");
}

/// A tar as a RUN step would send it: whiteouts, an opaque directory, a
/// hard link, a binary xattr with a newline in it, an absolute name, the
/// root entry, times far above the epoch.
fn run_changes() -> Vec<u8> {
    let mut w = LayerWriter::new(Vec::new(), Compression::Uncompressed, None).unwrap();
    let caps: Vec<(Vec<u8>, Vec<u8>)> = vec![(
        b"security.capability".to_vec(),
        vec![1, 0, 0, 2, b'\n', 0, 0x20, 0, 0, 0],
    )];
    type Spec<'a> = (&'a [u8], u8, &'a [u8], &'a [u8], &'a [(Vec<u8>, Vec<u8>)]);
    let entries: Vec<Spec<'_>> = vec![
        (b"./", b'5', b"", b"", &[]),
        (b"etc/.wh.passwd-", b'0', b"", b"", &[]),
        (b"var/cache/.wh..wh..opq", b'0', b"", b"", &[]),
        (b"/usr/bin/ping", b'0', b"", b"PING", &caps),
        (b"usr/bin/ping6", b'1', b"/usr/bin/ping", b"", &[]),
        (b"usr/lib/", b'5', b"", b"", &[]),
    ];
    for (path, typeflag, link, data, xattrs) in entries {
        w.header(&Raw {
            path,
            typeflag,
            link,
            mode: 0o4755,
            uid: 0,
            gid: 0,
            mtime: 4_000_000_000,
            size: data.len() as u64,
            dev: (0, 0),
            xattrs,
        })
        .unwrap();
        if !data.is_empty() {
            w.data(&mut &data[..], data.len() as u64).ok().unwrap();
        }
    }
    w.finish().unwrap().0
}

#[test]
fn append_tar_keeps_whiteouts_links_and_xattrs() {
    let input = run_changes();
    let mut w = LayerWriter::new(Vec::new(), Compression::Gzip, Some(1_700_000_000)).unwrap();
    // Trailing bytes after the end blocks are drained, not an error.
    let mut stream = input.clone();
    stream.extend_from_slice(&[0u8; 4096]);
    assert_eq!(w.append_tar(&stream[..]).unwrap(), 5);
    let (out, _) = w.finish().unwrap();
    let tar = decompress(&out, Compression::Gzip);
    let mut r = TarReader::new(&tar[..]);
    let mut got = Vec::new();
    while let Some(e) = r.next().unwrap() {
        assert_eq!(e.mtime, 1_700_000_000);
        let mut data = Vec::new();
        r.data().read_to_end(&mut data).unwrap();
        got.push((
            String::from_utf8(e.path).unwrap(),
            e.typeflag,
            String::from_utf8(e.link).unwrap(),
            data,
            e.xattrs,
            e.mode,
        ));
    }
    let caps = vec![(
        b"security.capability".to_vec(),
        vec![1, 0, 0, 2, b'\n', 0, 0x20, 0, 0, 0],
    )];
    let names: Vec<&str> = got.iter().map(|g| g.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "etc/.wh.passwd-",
            "var/cache/.wh..wh..opq",
            "usr/bin/ping",
            "usr/bin/ping6",
            "usr/lib/"
        ]
    );
    assert_eq!(got[2].3, b"PING");
    assert_eq!(got[2].4, caps);
    assert_eq!(got[2].5, 0o4755);
    assert_eq!((got[3].1, got[3].2.as_str()), (b'1', "usr/bin/ping"));
}

#[test]
fn append_tar_refuses_dotdot() {
    for (name, link) in [
        (&b"../x"[..], &b""[..]),
        (b"a/../../x", b""),
        (b"ok", b"../../etc/shadow"),
    ] {
        // Built by hand: the tar crate refuses to write such names.
        let mut h = tar::Header::new_ustar();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        h.set_mode(0o644);
        h.set_size(0);
        h.set_entry_type(if link.is_empty() {
            tar::EntryType::Regular
        } else {
            tar::EntryType::Link
        });
        h.set_cksum();
        let mut input = h.as_bytes().to_vec();
        input.extend_from_slice(&[0u8; 1024]);
        let mut w = LayerWriter::new(Vec::new(), Compression::Uncompressed, None).unwrap();
        let err = w.append_tar(&input[..]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&String::from_utf8_lossy(name).into_owned()),
            "{msg}"
        );
        assert!(!msg.contains('\n'));
    }
}

#[test]
fn append_tar_reads_gnu_long_names() {
    // The tar crate writes GNU `L` entries for long names.
    let long = format!("usr/share/{}/file", "x".repeat(200));
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(2);
    h.set_mode(0o600);
    h.set_mtime(10);
    b.append_data(&mut h, &long, &b"hi"[..]).unwrap();
    let input = b.into_inner().unwrap();
    let mut w = LayerWriter::new(Vec::new(), Compression::Uncompressed, None).unwrap();
    assert_eq!(w.append_tar(&input[..]).unwrap(), 1);
    let (out, _) = w.finish().unwrap();
    let mut ar = tar::Archive::new(&out[..]);
    let mut e = ar.entries().unwrap().next().unwrap().unwrap();
    assert_eq!(e.path_bytes().as_ref(), long.as_bytes());
    assert_eq!(e.header().mode().unwrap(), 0o600);
    let mut s = String::new();
    e.read_to_string(&mut s).unwrap();
    assert_eq!(s, "hi");
}

#[test]
fn truncated_tar_is_an_error() {
    let input = run_changes();
    let mut w = LayerWriter::new(Vec::new(), Compression::Uncompressed, None).unwrap();
    // Cut inside the data of usr/bin/ping.
    let cut = input.windows(4).position(|w| w == b"PING").unwrap() + 2;
    assert!(w.append_tar(&input[..cut]).is_err());
}
