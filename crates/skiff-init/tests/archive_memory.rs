//! ReadArchive and WriteArchive stream: a 64 MiB file goes out of and back
//! into the agent while the process's peak RSS grows by far less than the
//! file. A test binary of its own with one test, so that no other test's
//! allocations move the peak. The client side streams too: it never holds
//! the file or the archive.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::time::Instant;

use sha2::{Digest, Sha256};
use skiff_init::agent::{AgentService, Mode};
use skiff_proto::session::{guest_handshake, host_handshake};
use skiff_proto::v1::agent_client::AgentClient;
use skiff_proto::v1::{ArchiveChunk, PathRequest};
use tonic::transport::Channel;

const SIZE: u64 = 64 << 20;
/// Far below SIZE: what buffers in flight may add (channels, HTTP/2
/// windows, the blocking thread's stack).
const BOUND: u64 = 24 << 20;

async fn agent() -> AgentClient<Channel> {
    let agent = AgentService::new(Mode::Host, 0).expect("agent");
    let (mut host, mut guest) = tokio::io::duplex(1 << 20);
    tokio::spawn(async move {
        guest_handshake(&mut guest, "nonce")
            .await
            .expect("guest handshake");
        skiff_proto::serve(guest, agent).await.expect("serve");
    });
    host_handshake(&mut host, "test")
        .await
        .expect("host handshake");
    skiff_proto::connect(host).await.expect("connect")
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// Resets the peak RSS to the current RSS; returns it in bytes.
fn reset_peak() -> u64 {
    std::fs::write("/proc/self/clear_refs", "5").expect("resetting VmHWM");
    status_kib("VmHWM:") * 1024
}

fn peak() -> u64 {
    status_kib("VmHWM:") * 1024
}

/// A 64 MiB file, mostly a hole, with incompressible MiBs at its start,
/// middle and end; and its digest.
fn big_file(path: &std::path::Path) -> [u8; 32] {
    let mut f = File::create(path).unwrap();
    f.set_len(SIZE).unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut block = vec![0u8; 1 << 20];
    for offset in [0, SIZE / 2, SIZE - (1 << 20)] {
        for b in block.iter_mut() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            *b = seed as u8;
        }
        f.seek(SeekFrom::Start(offset)).unwrap();
        f.write_all(&block).unwrap();
    }
    digest_of(File::open(path).unwrap())
}

fn digest_of(mut f: File) -> [u8; 32] {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            return h.finalize().into();
        }
        h.update(&buf[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_64_mib_file_streams_through_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big");
    let digest = big_file(&path);
    let mut c = agent().await;

    // Out: the header, the data hashed as it comes, the two end blocks.
    let base = reset_peak();
    let started = Instant::now();
    let mut stream = c
        .read_archive(PathRequest {
            path: path.display().to_string(),
            follow_link: false,
        })
        .await
        .unwrap()
        .into_inner();
    let mut head = Vec::new();
    let mut hash = Sha256::new();
    let (mut data, mut tail, mut chunks) = (0u64, Vec::new(), 0u32);
    while let Some(chunk) = stream.message().await.unwrap() {
        assert!(chunk.data.len() <= 64 * 1024);
        chunks += 1;
        let mut bytes = &chunk.data[..];
        if head.len() < 512 {
            let n = bytes.len().min(512 - head.len());
            head.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
        }
        let n = bytes.len().min((SIZE - data) as usize);
        hash.update(&bytes[..n]);
        data += n as u64;
        tail.extend_from_slice(&bytes[n..]);
        assert!(tail.len() <= 10240, "more after the data than end blocks");
    }
    let out_secs = started.elapsed().as_secs_f64();
    let out_peak = peak().saturating_sub(base);
    let header = tar::Header::from_byte_slice(&head);
    assert_eq!(header.path().unwrap().to_str(), Some("big"));
    assert_eq!(header.size().unwrap(), SIZE);
    assert_eq!((data, <[u8; 32]>::from(hash.finalize())), (SIZE, digest));
    assert_eq!(tail, vec![0u8; 1024], "the two end-of-archive blocks");

    // In: the same archive made on the fly from the file.
    let dest = dir.path().join("dest");
    std::fs::create_dir(&dest).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_path("big").unwrap();
    h.set_size(SIZE);
    h.set_mode(0o644);
    h.set_cksum();
    let mut file = File::open(&path).unwrap();
    let first = ArchiveChunk {
        path: dest.display().to_string(),
        keep_owner: false,
        data: h.as_bytes().to_vec(),
    };
    let body = std::iter::from_fn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        let n = file.read(&mut buf).unwrap();
        (n > 0).then(|| {
            buf.truncate(n);
            ArchiveChunk {
                data: buf,
                ..Default::default()
            }
        })
    });
    let end = std::iter::once(ArchiveChunk {
        data: vec![0; 1024],
        ..Default::default()
    });
    let base_in = reset_peak();
    let started = Instant::now();
    c.write_archive(tokio_stream::iter(
        std::iter::once(first).chain(body).chain(end),
    ))
    .await
    .unwrap();
    let in_secs = started.elapsed().as_secs_f64();
    let in_peak = peak().saturating_sub(base_in);
    let copy = dest.join("big");
    assert_eq!(std::fs::metadata(&copy).unwrap().len(), SIZE);
    assert_eq!(digest_of(File::open(&copy).unwrap()), digest);

    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!(
        "ReadArchive: {} chunks, {:.0} MiB/s, peak RSS +{:.1} MiB; \
         WriteArchive: {:.0} MiB/s, peak RSS +{:.1} MiB (bound {:.0} MiB)",
        chunks,
        mib(SIZE) / out_secs,
        mib(out_peak),
        mib(SIZE) / in_secs,
        mib(in_peak),
        mib(BOUND),
    );
    assert!(
        out_peak < BOUND,
        "ReadArchive grew the peak RSS by {out_peak} bytes"
    );
    assert!(
        in_peak < BOUND,
        "WriteArchive grew the peak RSS by {in_peak} bytes"
    );
}
