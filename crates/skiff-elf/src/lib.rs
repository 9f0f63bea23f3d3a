//! skiff's one ELF reader, on the `object` crate's low-level ELF API: every
//! offset comes from the file, so nothing here indexes bytes by hand.
//!
//! Three kinds of question are answered: what a program or library needs
//! to be loaded ([`inspect`]: machine, interpreter, `DT_NEEDED`, search
//! paths, symbol versions), what a file's notes say ([`notes`]: the PVH
//! entry of a vmlinux) and what a named section holds ([`section`]: the
//! `.modinfo` of a kernel module). [`header`] reads only the file and
//! program headers, so it works on the first few KiB of a file.

#![warn(missing_docs)]

use object::elf::{self as raw, FileHeader32, FileHeader64};
use object::read::elf::{Dyn as _, FileHeader, ProgramHeader as _, SectionHeader as _};
use object::read::StringTable;
use object::Endianness as ObjEndian;

/// `e_machine` of x86-64.
pub const EM_X86_64: u16 = 62;
/// `e_machine` of 64-bit Arm.
pub const EM_AARCH64: u16 = 183;

/// Why a file could not be read as ELF.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ElfError {
    /// The file does not start with `\x7fELF`.
    #[error("not an ELF file")]
    NotElf,
    /// An ELF file of a class, byte order or version that does not exist.
    #[error("unsupported ELF file ({0})")]
    Unsupported(&'static str),
    /// An offset or size in the file points outside it, or a table is malformed.
    #[error("truncated or corrupt ELF file ({0})")]
    Corrupt(String),
}

fn corrupt(e: object::read::Error) -> ElfError {
    ElfError::Corrupt(e.to_string())
}

/// Word size of the file (`EI_CLASS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// 32-bit.
    Elf32,
    /// 64-bit.
    Elf64,
}

/// Byte order of the file (`EI_DATA`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endianness {
    /// Least significant byte first.
    Little,
    /// Most significant byte first.
    Big,
}

/// `e_type`: what the file is to the loader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `ET_REL`: an object file (kernel modules are these).
    Rel,
    /// `ET_EXEC`: a program at a fixed address.
    Exec,
    /// `ET_DYN`: a shared library, a position-independent program, or both.
    Dyn,
    /// `ET_CORE`: a core dump.
    Core,
    /// Any other value.
    Other(u16),
}

/// What the file and program headers say: enough to tell a program's
/// platform and whether it needs a dynamic loader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// `e_machine`.
    pub machine: u16,
    /// 32- or 64-bit.
    pub class: Class,
    /// Byte order.
    pub endianness: Endianness,
    /// `e_type`.
    pub kind: Kind,
    /// Whether a `PT_INTERP` program header names a dynamic loader.
    pub has_interp: bool,
}

impl Header {
    /// The docker platform architecture (`amd64`, `arm64`, …), if it has one.
    pub fn arch(&self) -> Option<&'static str> {
        docker_arch(self.machine, self.class, self.endianness)
    }
}

/// What a program or library needs to be loaded, from its headers, its
/// dynamic section and its GNU symbol-version tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfInfo {
    /// `e_machine`.
    pub machine: u16,
    /// 32- or 64-bit.
    pub class: Class,
    /// Byte order.
    pub endianness: Endianness,
    /// `e_type`.
    pub kind: Kind,
    /// The `PT_INTERP` path (the dynamic loader); `None` for a static
    /// program (or a library that is not also a program).
    pub interpreter: Option<String>,
    /// `DT_NEEDED` in order.
    pub needed: Vec<String>,
    /// `DT_RUNPATH`, split at `:` (unexpanded: `$ORIGIN` stays).
    pub runpath: Vec<String>,
    /// `DT_RPATH`, split at `:` (ignored by loaders when there is a runpath).
    pub rpath: Vec<String>,
    /// `DT_SONAME`.
    pub soname: Option<String>,
    /// Versions required from each needed file (`libc.so.6` →
    /// `GLIBC_2.34`, …), from `SHT_GNU_verneed`. Weak requirements
    /// (`VER_FLG_WEAK`) are left out: a loader only warns about those.
    pub version_needs: Vec<(String, Vec<String>)>,
    /// Versions this file defines (`GLIBC_2.2.5`, …), from
    /// `SHT_GNU_verdef`, without the base entry (the file's own name).
    pub version_defs: Vec<String>,
    /// `DT_FLAGS_1` (0 when absent).
    pub flags_1: u64,
    /// Whether the file has a dynamic section at all.
    pub has_dynamic: bool,
    /// A position-independent program: `ET_DYN` marked `DF_1_PIE`, or (for
    /// linkers older than that flag) `ET_DYN` with an interpreter and no
    /// soname. A static-pie is one without an interpreter.
    pub is_pie: bool,
}

impl ElfInfo {
    /// The docker platform architecture (`amd64`, `arm64`, …), if it has one.
    pub fn arch(&self) -> Option<&'static str> {
        docker_arch(self.machine, self.class, self.endianness)
    }

    /// The architecture for messages: the docker name, or the raw machine number.
    pub fn arch_name(&self) -> String {
        self.arch()
            .map_or_else(|| format!("ELF machine {}", self.machine), str::to_owned)
    }
}

/// One note: its name (trailing NULs removed), type and descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Note<'a> {
    /// Owner name, e.g. `GNU`, `Xen`, `Linux`.
    pub name: &'a [u8],
    /// `n_type`; its meaning depends on the name.
    pub kind: u32,
    /// The descriptor bytes.
    pub desc: &'a [u8],
}

/// The docker (GOARCH) name of an ELF machine, e.g. x86-64 → `amd64`,
/// AArch64 → `arm64`; `None` for machines docker has no name for.
pub fn docker_arch(machine: u16, class: Class, endianness: Endianness) -> Option<&'static str> {
    use Class::*;
    use Endianness::*;
    Some(match (machine, class, endianness) {
        (EM_X86_64, Elf64, _) => "amd64",
        (3, Elf32, _) => "386",
        (EM_AARCH64, Elf64, _) => "arm64",
        (40, Elf32, _) => "arm",
        (21, Elf64, Little) => "ppc64le",
        (21, Elf64, Big) => "ppc64",
        (22, Elf64, _) => "s390x",
        (243, Elf64, _) => "riscv64",
        (258, Elf64, _) => "loong64",
        (8, Elf64, Little) => "mips64le",
        (8, Elf64, Big) => "mips64",
        (8, Elf32, Little) => "mipsle",
        (8, Elf32, Big) => "mips",
        _ => return None,
    })
}

/// Whether `prefix` (the first bytes of a file, 4 are enough) is ELF.
pub fn is_elf(prefix: &[u8]) -> bool {
    prefix.starts_with(b"\x7fELF")
}

/// Calls the generic reader for the file's class.
macro_rules! by_class {
    ($data:expr, $f:ident) => {{
        let data: &[u8] = $data;
        if !is_elf(data) {
            return Err(ElfError::NotElf);
        }
        match data.get(4) {
            Some(1) => $f::<FileHeader32<ObjEndian>>(data),
            Some(2) => $f::<FileHeader64<ObjEndian>>(data),
            _ => Err(ElfError::Unsupported("unknown class")),
        }
    }};
}

/// Reads the file and program headers only: works on a prefix of the file
/// that holds them (the first 64 KiB of any real program do).
pub fn header(data: &[u8]) -> Result<Header, ElfError> {
    by_class!(data, header_as)
}

/// Summarizes a program or library. Needs the whole file (section headers
/// are at its end). A file without section headers (`sstrip`) still gives
/// its dynamic section, through the program headers, but no versions.
pub fn inspect(data: &[u8]) -> Result<ElfInfo, ElfError> {
    by_class!(data, inspect_as)
}

/// The notes of `PT_NOTE` segments, or, in a file that has none there, of
/// `SHT_NOTE` sections.
pub fn notes(data: &[u8]) -> Result<Vec<Note<'_>>, ElfError> {
    by_class!(data, notes_as)
}

/// The bytes of the section named `name` (empty for `SHT_NOBITS`), or
/// `None` when the file has no such section.
pub fn section<'a>(data: &'a [u8], name: &str) -> Result<Option<&'a [u8]>, ElfError> {
    if !is_elf(data) {
        return Err(ElfError::NotElf);
    }
    match data.get(4) {
        Some(1) => section_as::<FileHeader32<ObjEndian>>(data, name),
        Some(2) => section_as::<FileHeader64<ObjEndian>>(data, name),
        _ => Err(ElfError::Unsupported("unknown class")),
    }
}

fn parse<Elf: FileHeader<Endian = ObjEndian>>(data: &[u8]) -> Result<(&Elf, ObjEndian), ElfError> {
    let h = Elf::parse(data).map_err(|e| {
        if data.len() < std::mem::size_of::<Elf>() {
            corrupt(e)
        } else {
            // parse checks only the identification bytes beyond the size.
            ElfError::Unsupported("bad byte order or version")
        }
    })?;
    let endian = h
        .endian()
        .map_err(|_| ElfError::Unsupported("bad byte order"))?;
    Ok((h, endian))
}

fn kind_of(e_type: raw::FileType) -> Kind {
    match e_type {
        raw::ET_REL => Kind::Rel,
        raw::ET_EXEC => Kind::Exec,
        raw::ET_DYN => Kind::Dyn,
        raw::ET_CORE => Kind::Core,
        other => Kind::Other(other.0),
    }
}

fn basics<Elf: FileHeader<Endian = ObjEndian>>(
    h: &Elf,
    e: ObjEndian,
) -> (u16, Class, Endianness, Kind) {
    let class = if h.is_class_64() {
        Class::Elf64
    } else {
        Class::Elf32
    };
    let endianness = if e == ObjEndian::Little {
        Endianness::Little
    } else {
        Endianness::Big
    };
    (h.e_machine(e).0, class, endianness, kind_of(h.e_type(e)))
}

fn header_as<Elf: FileHeader<Endian = ObjEndian>>(data: &[u8]) -> Result<Header, ElfError> {
    let (h, e) = parse::<Elf>(data)?;
    let (machine, class, endianness, kind) = basics(h, e);
    let phs = h.program_headers(e, data).map_err(corrupt)?;
    Ok(Header {
        machine,
        class,
        endianness,
        kind,
        has_interp: phs.iter().any(|p| p.p_type(e) == raw::PT_INTERP),
    })
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn split_path(b: &[u8]) -> Vec<String> {
    text(b)
        .split(':')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A dynamic table and the string table its strings are in.
type DynamicStrings<'a, Elf> = (&'a [<Elf as FileHeader>::Dyn], StringTable<'a>);

/// The dynamic entries and their string table: from the `SHT_DYNAMIC`
/// section when there are section headers, else from `PT_DYNAMIC` with the
/// string table found through the loadable segments (as a loader does).
fn dynamic<'a, Elf: FileHeader<Endian = ObjEndian>>(
    h: &'a Elf,
    e: ObjEndian,
    data: &'a [u8],
    sections: Option<&object::read::elf::SectionTable<'a, Elf>>,
) -> Result<Option<DynamicStrings<'a, Elf>>, ElfError> {
    if let Some(s) = sections {
        if let Some((dyns, link)) = s.dynamic(e, data).map_err(corrupt)? {
            return Ok(Some((dyns, s.strings(e, data, link).map_err(corrupt)?)));
        }
        if !s.is_empty() {
            return Ok(None);
        }
    }
    let phs = h.program_headers(e, data).map_err(corrupt)?;
    let Some(dyns) = phs
        .iter()
        .find_map(|p| p.dynamic(e, data).transpose())
        .transpose()
        .map_err(corrupt)?
    else {
        return Ok(None);
    };
    let value = |tag| dyns.iter().find(|d| d.tag(e) == tag).map(|d| d.val(e));
    let strings = match (value(raw::DT_STRTAB), value(raw::DT_STRSZ)) {
        (Some(addr), Some(size)) => phs
            .iter()
            .filter(|p| p.p_type(e) == raw::PT_LOAD)
            .find_map(|p| p.data_range(e, data, addr, size).ok().flatten())
            .map(|b| StringTable::new(b, 0, b.len() as u64))
            .ok_or_else(|| ElfError::Corrupt("dynamic string table outside the file".into()))?,
        _ => StringTable::default(),
    };
    Ok(Some((dyns, strings)))
}

fn inspect_as<Elf: FileHeader<Endian = ObjEndian>>(data: &[u8]) -> Result<ElfInfo, ElfError> {
    let (h, e) = parse::<Elf>(data)?;
    let (machine, class, endianness, kind) = basics(h, e);
    let phs = h.program_headers(e, data).map_err(corrupt)?;
    let mut interpreter = None;
    for p in phs {
        if let Some(i) = p.interpreter(e, data).map_err(corrupt)? {
            interpreter = Some(text(i));
        }
    }
    // A corrupt section table does not stop a loader, which never reads it.
    let sections = h.sections(e, data).ok();
    let mut info = ElfInfo {
        machine,
        class,
        endianness,
        kind,
        interpreter,
        needed: Vec::new(),
        runpath: Vec::new(),
        rpath: Vec::new(),
        soname: None,
        version_needs: Vec::new(),
        version_defs: Vec::new(),
        flags_1: 0,
        has_dynamic: false,
        is_pie: false,
    };
    if let Some((dyns, strings)) = dynamic(h, e, data, sections.as_ref())? {
        info.has_dynamic = true;
        for d in dyns {
            let tag = d.tag(e);
            if tag == raw::DT_NULL {
                break;
            }
            let s = || d.string(e, strings).map_err(corrupt);
            match tag {
                raw::DT_NEEDED => info.needed.push(text(s()?)),
                raw::DT_SONAME => info.soname = Some(text(s()?)),
                raw::DT_RPATH => info.rpath.extend(split_path(s()?)),
                raw::DT_RUNPATH => info.runpath.extend(split_path(s()?)),
                raw::DT_FLAGS_1 => info.flags_1 = d.val(e),
                _ => {}
            }
        }
    }
    if let Some(s) = &sections {
        versions(s, e, data, &mut info)?;
    }
    info.is_pie = kind == Kind::Dyn
        && (info.flags_1 & raw::DF_1_PIE.0 != 0
            || (info.interpreter.is_some() && info.soname.is_none()));
    Ok(info)
}

fn versions<Elf: FileHeader<Endian = ObjEndian>>(
    s: &object::read::elf::SectionTable<'_, Elf>,
    e: ObjEndian,
    data: &[u8],
    info: &mut ElfInfo,
) -> Result<(), ElfError> {
    if let Some((mut needs, link)) = s.gnu_verneed(e, data).map_err(corrupt)? {
        let strings = s.strings(e, data, link).map_err(corrupt)?;
        while let Some((need, mut aux)) = needs.next().map_err(corrupt)? {
            let file = text(need.file(e, strings).map_err(corrupt)?);
            let mut names = Vec::new();
            while let Some(a) = aux.next().map_err(corrupt)? {
                if a.vna_flags.get(e).0 & raw::VER_FLG_WEAK.0 == 0 {
                    names.push(text(a.name(e, strings).map_err(corrupt)?));
                }
            }
            info.version_needs.push((file, names));
        }
    }
    if let Some((mut defs, link)) = s.gnu_verdef(e, data).map_err(corrupt)? {
        let strings = s.strings(e, data, link).map_err(corrupt)?;
        while let Some((def, mut aux)) = defs.next().map_err(corrupt)? {
            // The base definition names the file itself; later auxiliary
            // entries of a definition name its parents, not new versions.
            if def.vd_flags.get(e).0 & raw::VER_FLG_BASE.0 != 0 {
                continue;
            }
            if let Some(a) = aux.next().map_err(corrupt)? {
                info.version_defs
                    .push(text(a.name(e, strings).map_err(corrupt)?));
            }
        }
    }
    Ok(())
}

fn notes_as<Elf: FileHeader<Endian = ObjEndian>>(data: &[u8]) -> Result<Vec<Note<'_>>, ElfError> {
    let (h, e) = parse::<Elf>(data)?;
    let mut out = Vec::new();
    for p in h.program_headers(e, data).map_err(corrupt)? {
        if let Some(mut it) = p.notes(e, data).map_err(corrupt)? {
            while let Some(n) = it.next().map_err(corrupt)? {
                out.push(Note {
                    name: n.name(),
                    kind: n.n_type(e).0,
                    desc: n.desc(),
                });
            }
        }
    }
    if out.is_empty() {
        for s in h.sections(e, data).map_err(corrupt)?.iter() {
            if let Some(mut it) = s.notes(e, data).map_err(corrupt)? {
                while let Some(n) = it.next().map_err(corrupt)? {
                    out.push(Note {
                        name: n.name(),
                        kind: n.n_type(e).0,
                        desc: n.desc(),
                    });
                }
            }
        }
    }
    Ok(out)
}

fn section_as<'a, Elf: FileHeader<Endian = ObjEndian>>(
    data: &'a [u8],
    name: &str,
) -> Result<Option<&'a [u8]>, ElfError> {
    let (h, e) = parse::<Elf>(data)?;
    let sections = h.sections(e, data).map_err(corrupt)?;
    match sections.section_by_name(e, name.as_bytes()) {
        Some((_, s)) => Ok(Some(s.data(e, data).map_err(corrupt)?)),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests;
