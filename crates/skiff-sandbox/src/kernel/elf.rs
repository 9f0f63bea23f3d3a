//! The kernel's three questions about ELF files, answered by skiff-elf (the
//! project's one ELF reader): does a vmlinux carry the PVH entry note that
//! `-M microvm` boots through, what does a kernel module's `.modinfo`
//! section say, and is a program static (no PT_INTERP) so that a guest
//! without libc can run it as init.

pub use skiff_elf::{ElfError, EM_X86_64};

/// XEN_ELFNOTE_PHYS32_ENTRY: the 32-bit physical entry point of the PVH boot
/// protocol. QEMU's `-kernel` loader looks for it in an ELF vmlinux.
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;

/// Whether the image has the PVH entry note (Xen note type 18).
pub fn has_pvh_note(data: &[u8]) -> Result<bool, ElfError> {
    Ok(skiff_elf::notes(data)?
        .iter()
        .any(|n| n.name == b"Xen" && n.kind == XEN_ELFNOTE_PHYS32_ENTRY))
}

/// The `.modinfo` section of a kernel module (NUL-separated `key=value`).
pub fn modinfo(data: &[u8]) -> Result<Option<&[u8]>, ElfError> {
    skiff_elf::section(data, ".modinfo")
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
    skiff_elf::header(&head).is_ok_and(|h| h.machine == EM_X86_64 && !h.has_interp)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const PT_NOTE: u32 = 4;

    #[test]
    fn static_executables() {
        // The test binary is dynamically linked; busybox-static is not.
        assert!(!is_static_executable(&std::env::current_exe().unwrap()));
        assert!(is_static_executable(std::path::Path::new("/bin/busybox")));
        assert!(!is_static_executable(std::path::Path::new("/etc/passwd")));
        assert!(!is_static_executable(std::path::Path::new("/nonexistent")));
    }

    fn align4(n: usize) -> usize {
        (n + 3) & !3
    }

    /// A minimal ELF64 LE x86-64 file with one PT_NOTE segment holding `notes`
    /// (name, type, desc), and no sections. (A fixture writer: reading goes
    /// through skiff-elf.)
    pub(crate) fn elf_with_notes(notes: &[(&str, u32, &[u8])]) -> Vec<u8> {
        let mut note = Vec::new();
        for (name, kind, desc) in notes {
            let n = name.len() + 1;
            note.extend_from_slice(&(n as u32).to_le_bytes());
            note.extend_from_slice(&(desc.len() as u32).to_le_bytes());
            note.extend_from_slice(&kind.to_le_bytes());
            note.extend_from_slice(name.as_bytes());
            note.push(0);
            note.resize(align4(note.len()), 0);
            note.extend_from_slice(desc);
            note.resize(align4(note.len()), 0);
        }
        let mut f = vec![0u8; 64 + 56];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2; // ELFCLASS64
        f[5] = 1; // ELFDATA2LSB
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
        assert_eq!(skiff_elf::header(&f).unwrap().machine, EM_X86_64);
        assert!(has_pvh_note(&f).unwrap());
    }

    #[test]
    fn other_xen_notes_are_not_pvh() {
        let f = elf_with_notes(&[("Xen", 17, b"1234"), ("Linux", 18, b"1234")]);
        assert!(!has_pvh_note(&f).unwrap());
    }

    #[test]
    fn rejects_non_elf_and_truncation() {
        assert_eq!(has_pvh_note(b"MZ\0\0").err(), Some(ElfError::NotElf));
        let mut f = elf_with_notes(&[("Xen", 18, b"1234")]);
        f.truncate(130);
        assert!(matches!(has_pvh_note(&f), Err(ElfError::Corrupt(_))));
    }

    #[test]
    fn modinfo_of_a_module() {
        let f = crate::kernel::tests::elf_with_modinfo("depends=a,b\0name=x\0");
        assert_eq!(modinfo(&f).unwrap(), Some(&b"depends=a,b\0name=x\0"[..]));
        assert_eq!(modinfo(&elf_with_notes(&[])).unwrap(), None);
    }
}
