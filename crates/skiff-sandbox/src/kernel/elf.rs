//! Just enough ELF64 (little-endian) reading for three questions: does a
//! vmlinux carry the PVH entry note that `-M microvm` boots through, what
//! does a kernel module's `.modinfo` section say, and is a program static
//! (no PT_INTERP) so that a guest without libc can run it as init. Every
//! offset comes from the file, so every read is bounds-checked.

const ELFMAG: &[u8; 4] = b"\x7fELF";
const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
pub const EM_X86_64: u16 = 62;
const PT_INTERP: u32 = 3;
const PT_NOTE: u32 = 4;
const SHT_NOTE: u32 = 7;
/// XEN_ELFNOTE_PHYS32_ENTRY: the 32-bit physical entry point of the PVH boot
/// protocol. QEMU's `-kernel` loader looks for it in an ELF vmlinux.
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ElfError {
    #[error("not an ELF file")]
    NotElf,
    #[error("not a 64-bit little-endian ELF file")]
    NotElf64Le,
    #[error("truncated or corrupt ELF file ({0})")]
    Corrupt(&'static str),
}

/// A parsed ELF64 LE image borrowed from memory.
pub struct Elf<'a> {
    data: &'a [u8],
    pub machine: u16,
}

fn u16_at(d: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        d.get(off..off.checked_add(2)?)?.try_into().ok()?,
    ))
}
fn u32_at(d: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        d.get(off..off.checked_add(4)?)?.try_into().ok()?,
    ))
}
fn u64_at(d: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        d.get(off..off.checked_add(8)?)?.try_into().ok()?,
    ))
}
fn usize_at(d: &[u8], off: usize) -> Option<usize> {
    usize::try_from(u64_at(d, off)?).ok()
}
fn slice(d: &[u8], off: usize, len: usize) -> Option<&[u8]> {
    d.get(off..off.checked_add(len)?)
}

/// One section: its name and bytes.
/// A note: name (without NUL), type, descriptor.
pub type Note<'a> = (&'a [u8], u32, &'a [u8]);

pub struct Section<'a> {
    pub name: &'a [u8],
    pub kind: u32,
    pub data: &'a [u8],
}

impl<'a> Elf<'a> {
    pub fn parse(data: &'a [u8]) -> Result<Self, ElfError> {
        if data.len() < 4 || &data[..4] != ELFMAG {
            return Err(ElfError::NotElf);
        }
        if data.len() < 64 || data[4] != ELFCLASS64 || data[5] != ELFDATA2LSB {
            return Err(ElfError::NotElf64Le);
        }
        let machine = u16_at(data, 18).ok_or(ElfError::Corrupt("header"))?;
        Ok(Self { data, machine })
    }

    /// Program headers: (type, file offset, file size).
    fn program_headers(&self) -> Result<Vec<(u32, usize, usize)>, ElfError> {
        let d = self.data;
        let bad = || ElfError::Corrupt("program headers");
        let phoff = usize_at(d, 32).ok_or(ElfError::Corrupt("header"))?;
        let phentsize = usize::from(u16_at(d, 54).ok_or(ElfError::Corrupt("header"))?);
        let phnum = usize::from(u16_at(d, 56).ok_or(ElfError::Corrupt("header"))?);
        let mut out = Vec::with_capacity(phnum);
        for i in 0..phnum {
            let ph = phoff
                .checked_add(i.checked_mul(phentsize).ok_or_else(bad)?)
                .ok_or_else(bad)?;
            let kind = u32_at(d, ph).ok_or_else(bad)?;
            let off = usize_at(d, ph + 8).ok_or_else(bad)?;
            let size = usize_at(d, ph + 32).ok_or_else(bad)?;
            out.push((kind, off, size));
        }
        Ok(out)
    }

    /// Whether the program names a dynamic loader (PT_INTERP).
    pub fn has_interp(&self) -> Result<bool, ElfError> {
        Ok(self
            .program_headers()?
            .iter()
            .any(|&(kind, ..)| kind == PT_INTERP))
    }

    /// Notes from program headers (PT_NOTE), falling back to note sections:
    /// (name without NUL, type, descriptor).
    pub fn notes(&self) -> Result<Vec<Note<'a>>, ElfError> {
        let mut notes = Vec::new();
        for (kind, off, size) in self.program_headers()? {
            if kind != PT_NOTE {
                continue;
            }
            let bytes = slice(self.data, off, size).ok_or(ElfError::Corrupt("note segment"))?;
            parse_notes(bytes, &mut notes)?;
        }
        if notes.is_empty() {
            for s in self.sections()? {
                if s.kind == SHT_NOTE {
                    parse_notes(s.data, &mut notes)?;
                }
            }
        }
        Ok(notes)
    }

    pub fn sections(&self) -> Result<Vec<Section<'a>>, ElfError> {
        let d = self.data;
        let shoff = usize_at(d, 40).ok_or(ElfError::Corrupt("header"))?;
        let shentsize = usize::from(u16_at(d, 58).ok_or(ElfError::Corrupt("header"))?);
        let shnum = usize::from(u16_at(d, 60).ok_or(ElfError::Corrupt("header"))?);
        let shstrndx = usize::from(u16_at(d, 62).ok_or(ElfError::Corrupt("header"))?);
        if shoff == 0 || shnum == 0 {
            return Ok(Vec::new());
        }
        let header = |i: usize| -> Option<(u32, u32, usize, usize)> {
            let sh = shoff.checked_add(i.checked_mul(shentsize)?)?;
            Some((
                u32_at(d, sh)?,
                u32_at(d, sh + 4)?,
                usize_at(d, sh + 24)?,
                usize_at(d, sh + 32)?,
            ))
        };
        let (_, _, stroff, strsize) =
            header(shstrndx).ok_or(ElfError::Corrupt("section headers"))?;
        let strtab = slice(d, stroff, strsize).ok_or(ElfError::Corrupt("section names"))?;
        let mut out = Vec::with_capacity(shnum);
        for i in 0..shnum {
            let (name_off, kind, off, size) =
                header(i).ok_or(ElfError::Corrupt("section headers"))?;
            let name = strtab
                .get(name_off as usize..)
                .ok_or(ElfError::Corrupt("section names"))?;
            let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
            // SHT_NOBITS (8) occupies no file space.
            let data = if kind == 8 {
                &[][..]
            } else {
                slice(d, off, size).ok_or(ElfError::Corrupt("section data"))?
            };
            out.push(Section { name, kind, data });
        }
        Ok(out)
    }

    /// Whether the image has the PVH entry note (Xen note type 18).
    pub fn has_pvh_note(&self) -> Result<bool, ElfError> {
        Ok(self
            .notes()?
            .iter()
            .any(|(name, kind, _)| *name == b"Xen" && *kind == XEN_ELFNOTE_PHYS32_ENTRY))
    }
}

/// Whether `path` is an x86-64 ELF program without a dynamic loader: one a
/// guest with no libc can run. Reads only the start of the file, where the
/// program headers are.
pub fn is_static_executable(path: &std::path::Path) -> bool {
    use std::io::Read;
    let mut head = Vec::with_capacity(64 << 10);
    let read = std::fs::File::open(path).and_then(|f| f.take(64 << 10).read_to_end(&mut head));
    if read.is_err() {
        return false;
    }
    Elf::parse(&head).is_ok_and(|e| e.machine == EM_X86_64 && e.has_interp() == Ok(false))
}

fn align4(n: usize) -> Option<usize> {
    n.checked_add(3).map(|n| n & !3)
}

fn parse_notes<'a>(mut b: &'a [u8], out: &mut Vec<Note<'a>>) -> Result<(), ElfError> {
    let bad = || ElfError::Corrupt("note");
    while b.len() >= 12 {
        let namesz = u32_at(b, 0).ok_or_else(bad)? as usize;
        let descsz = u32_at(b, 4).ok_or_else(bad)? as usize;
        let kind = u32_at(b, 8).ok_or_else(bad)?;
        let name_end = 12usize
            .checked_add(align4(namesz).ok_or_else(bad)?)
            .ok_or_else(bad)?;
        let desc_end = name_end
            .checked_add(align4(descsz).ok_or_else(bad)?)
            .ok_or_else(bad)?;
        let name = slice(b, 12, namesz).ok_or_else(bad)?;
        let name = name.strip_suffix(b"\0").unwrap_or(name);
        let desc = slice(b, name_end, descsz).ok_or_else(bad)?;
        out.push((name, kind, desc));
        b = b.get(desc_end..).unwrap_or(&[]);
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn static_executables() {
        // The test binary is dynamically linked; busybox-static is not.
        assert!(!is_static_executable(&std::env::current_exe().unwrap()));
        assert!(is_static_executable(std::path::Path::new("/bin/busybox")));
        assert!(!is_static_executable(std::path::Path::new("/etc/passwd")));
        assert!(!is_static_executable(std::path::Path::new("/nonexistent")));
    }

    /// A minimal ELF64 LE x86-64 file with one PT_NOTE segment holding `notes`
    /// (name, type, desc), and no sections.
    pub(crate) fn elf_with_notes(notes: &[(&str, u32, &[u8])]) -> Vec<u8> {
        let mut note = Vec::new();
        for (name, kind, desc) in notes {
            let n = name.len() + 1;
            note.extend_from_slice(&(n as u32).to_le_bytes());
            note.extend_from_slice(&(desc.len() as u32).to_le_bytes());
            note.extend_from_slice(&kind.to_le_bytes());
            note.extend_from_slice(name.as_bytes());
            note.push(0);
            note.resize(align4(note.len()).unwrap(), 0);
            note.extend_from_slice(desc);
            note.resize(align4(note.len()).unwrap(), 0);
        }
        let mut f = vec![0u8; 64 + 56];
        f[..4].copy_from_slice(ELFMAG);
        f[4] = ELFCLASS64;
        f[5] = ELFDATA2LSB;
        f[6] = 1;
        f[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        f[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
        f[32..40].copy_from_slice(&64u64.to_le_bytes()); // phoff
        f[54..56].copy_from_slice(&56u16.to_le_bytes());
        f[56..58].copy_from_slice(&1u16.to_le_bytes());
        f[58..60].copy_from_slice(&64u16.to_le_bytes());
        let ph = 64;
        f[ph..ph + 4].copy_from_slice(&PT_NOTE.to_le_bytes());
        f[ph + 8..ph + 16].copy_from_slice(&(120u64).to_le_bytes());
        f[ph + 32..ph + 40].copy_from_slice(&(note.len() as u64).to_le_bytes());
        f.extend_from_slice(&note);
        f
    }

    #[test]
    fn finds_the_pvh_note() {
        let f = elf_with_notes(&[
            ("GNU", 3, b"abcd"),
            ("Xen", 18, &0x100_0000u32.to_le_bytes()),
        ]);
        let elf = Elf::parse(&f).unwrap();
        assert_eq!(elf.machine, EM_X86_64);
        assert!(elf.has_pvh_note().unwrap());
    }

    #[test]
    fn other_xen_notes_are_not_pvh() {
        let f = elf_with_notes(&[("Xen", 17, b"1234"), ("Linux", 18, b"1234")]);
        assert!(!Elf::parse(&f).unwrap().has_pvh_note().unwrap());
    }

    #[test]
    fn rejects_non_elf_and_truncation() {
        assert_eq!(Elf::parse(b"MZ\0\0").err(), Some(ElfError::NotElf));
        let mut f = elf_with_notes(&[("Xen", 18, b"1234")]);
        f.truncate(130);
        assert!(matches!(
            Elf::parse(&f).unwrap().has_pvh_note(),
            Err(ElfError::Corrupt(_))
        ));
    }
}
