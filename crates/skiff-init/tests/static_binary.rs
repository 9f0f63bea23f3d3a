//! target/skiff-init (made by scripts/build-init.sh) must run in a guest
//! that has no libc and no dynamic loader at all.

use std::path::PathBuf;

use object::elf;
use object::read::elf::{Dyn, ElfFile64, FileHeader, ProgramHeader};
use object::Endianness;

fn binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("skiff-init")
}

#[test]
fn skiff_init_is_a_static_x86_64_executable() {
    let path = binary();
    let data = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e}: run scripts/build-init.sh first", path.display()));
    let file = ElfFile64::<Endianness>::parse(&*data).expect("an ELF64 file");
    let endian = file.endian();
    let header = file.elf_header();
    assert_eq!(header.e_machine(endian), elf::EM_X86_64, "not x86-64");
    // ET_EXEC, or ET_DYN for a static-pie; either way it must have an entry
    // point and no interpreter (checked below).
    let kind = header.e_type(endian);
    assert!(
        kind == elf::ET_EXEC || kind == elf::ET_DYN,
        "ELF type {kind} is not an executable"
    );
    assert_ne!(header.e_entry(endian), 0, "no entry point");

    let segments = header
        .program_headers(endian, &*data)
        .expect("program headers");
    assert!(
        !segments.iter().any(|s| s.p_type(endian) == elf::PT_INTERP),
        "has PT_INTERP: needs a dynamic loader"
    );
    let mut needed = Vec::new();
    for segment in segments
        .iter()
        .filter(|s| s.p_type(endian) == elf::PT_DYNAMIC)
    {
        let entries = segment
            .data_as_array::<elf::Dyn64<Endianness>, _>(endian, &*data)
            .expect("dynamic section");
        needed.extend(
            entries
                .iter()
                .filter(|d| d.d_tag(endian) == elf::DT_NEEDED)
                .map(|d| d.d_val(endian)),
        );
    }
    assert!(
        needed.is_empty(),
        "has DT_NEEDED entries: links shared libraries"
    );

    let size = data.len();
    assert!(
        size <= 8 << 20,
        "skiff-init is {size} bytes, over the 8 MiB budget"
    );
}
