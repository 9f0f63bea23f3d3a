#!/usr/bin/env bash
# Regenerates the small seed corpus in seeds/tar_layer/ (flag byte + layer;
# see body.rs). Needs GNU tar and python3.
set -euo pipefail
cd "$(dirname "$0")"
out=seeds/tar_layer
rm -rf "$out" && mkdir -p "$out"
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
mkdir -p "$w/src/d/sub"
printf 'hello\n' >"$w/src/d/f"
ln -s f "$w/src/d/s"
ln "$w/src/d/f" "$w/src/d/h"
mkfifo "$w/src/d/p"
printf 'x' >"$w/src/d/sub/$(printf 'n%.0s' $(seq 120))"
chmod 4755 "$w/src/d/f"
t() { tar -b1 --numeric-owner --owner=0 --group=0 --mtime=@1700000000 -C "$w/src" "$@"; }
seed() { { printf "\\x$1"; cat; } >"$out/$2"; }
t --format=gnu -cf - d | seed 00 gnu-basic
t --format=gnu -cf - d | seed 01 gnu-basic-gz
truncate -s 70000 "$w/src/sparse" && printf 'data' | dd of="$w/src/sparse" bs=1 seek=40000 conv=notrunc 2>/dev/null
t --format=gnu --sparse -cf - sparse | seed 02 gnu-sparse-zst
t --format=posix --sparse -cf - sparse | seed 04 pax-sparse-fixsums
python3 - "$w" <<'PY'
import io, sys, tarfile
w = sys.argv[1]
def add(tf, name, typ=tarfile.REGTYPE, data=b"", **kw):
    ti = tarfile.TarInfo(name); ti.type = typ; ti.size = len(data); ti.mtime = 1700000000.5
    for k, v in kw.items(): setattr(ti, k, v)
    tf.addfile(ti, io.BytesIO(data) if data else None)
b = io.BytesIO()
with tarfile.open(fileobj=b, mode="w", format=tarfile.PAX_FORMAT) as tf:
    add(tf, "x/", tarfile.DIRTYPE, mode=0o755, pax_headers={"SCHILY.xattr.user.d": "1"})
    add(tf, "x/cap", data=b"bin", mode=0o755,
        pax_headers={"SCHILY.xattr.security.capability": "\x01\x00\x00\x02\x0a\x20\x00\x00" + "\x00" * 12,
                     "SCHILY.xattr.user.big": "v" * 3000, "mtime": "1700000000.123456789"})
    add(tf, "x/" + "y" * 200, data=b"long", uid=4000000000, gid=70000)
    add(tf, "x/c", tarfile.CHRTYPE, devmajor=4095, devminor=1048575)
    add(tf, "x/b", tarfile.BLKTYPE, devmajor=8, devminor=1)
def trim(data):
    # tarfile pads to 10 KiB records: keep just the end-of-archive marker.
    data = data.rstrip(b"\0")
    data += b"\0" * (-len(data) % 512)
    return data + b"\0" * 1024
open(w + "/pax.tar", "wb").write(trim(b.getvalue()))
l1 = io.BytesIO()
with tarfile.open(fileobj=l1, mode="w", format=tarfile.GNU_FORMAT) as tf:
    add(tf, "a/", tarfile.DIRTYPE, mode=0o755)
    add(tf, "a/f", data=b"f")
    add(tf, "a/g", data=b"g")
    add(tf, "o/", tarfile.DIRTYPE, mode=0o755)
    add(tf, "o/old", data=b"old")
l2 = io.BytesIO()
with tarfile.open(fileobj=l2, mode="w", format=tarfile.GNU_FORMAT) as tf:
    add(tf, "a/.wh.f")
    add(tf, "o/.wh..wh..opq")
    add(tf, "o/new", data=b"new")
    add(tf, "a/g", tarfile.LNKTYPE, linkname="o/new")
    add(tf, "a/", tarfile.DIRTYPE, mode=0o700)
one = trim(l1.getvalue())
assert len(one) % 512 == 0 and len(one) // 512 < 256
open(w + "/two.bin", "wb").write(bytes([0x08 | 0x20, len(one) // 512]) + one + trim(l2.getvalue()))
PY
seed 00 pax-xattrs-devices <"$w/pax.tar"
cp "$w/two.bin" "$out/two-layers-whiteouts"
ls -l "$out"
