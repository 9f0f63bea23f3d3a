//! ADD archives: telling a tar (plain, gzip, zstd) by its content, and
//! reading one.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek};
use std::path::Path;

use super::tarread::is_tar;
use super::{Compression, LayerError};

/// Whether a file is a tar, plain or compressed: its (decompressed) first
/// block has a valid tar header checksum. A compressed file that is not a
/// tar (a `.gz` of anything else) is not an archive: ADD copies it.
pub(super) fn sniff_archive(host: &Path) -> Result<Option<Compression>, LayerError> {
    let read_err = |source| LayerError::Read {
        path: host.to_owned(),
        source,
    };
    let mut f = File::open(host).map_err(read_err)?;
    let mut magic = [0u8; 4];
    let n = read_full(&mut f, &mut magic).map_err(read_err)?;
    let comp = match &magic[..n] {
        [0x1f, 0x8b, ..] => Compression::Gzip,
        [0x28, 0xb5, 0x2f, 0xfd] => Compression::Zstd,
        _ => Compression::Uncompressed,
    };
    f.rewind().map_err(read_err)?;
    let r = decoder_from(f, comp).map_err(read_err)?;
    // A decompression error means "not this format": copy the file. The
    // first header (with its extensions) is all that is read.
    Ok(is_tar(r.take(1 << 20)).then_some(comp))
}

pub(super) fn decoder(host: &Path, comp: Compression) -> Result<Box<dyn Read>, LayerError> {
    let read_err = |source| LayerError::Read {
        path: host.to_owned(),
        source,
    };
    decoder_from(File::open(host).map_err(read_err)?, comp).map_err(read_err)
}

fn decoder_from(f: File, comp: Compression) -> io::Result<Box<dyn Read>> {
    let r = BufReader::with_capacity(256 << 10, f);
    Ok(match comp {
        // Multi-member gzip, as Go's reader accepts by default.
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(r)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(r)?),
        Compression::Uncompressed => Box::new(r),
    })
}

fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// An archive entry's path relative to the destination: a leading `/`
/// dropped, `..` resolved lexically; `None` when it climbs above.
pub(super) fn inside(path: &[u8]) -> Option<Vec<u8>> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for c in path.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(parts.join(&b'/'))
}
