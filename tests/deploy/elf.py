"""Section names of an ELF shared object, read from its section headers — enough to tell a
stripped extension from one that still carries its symbol table and debug information, without
binutils on the host.

The layout is the ELF-64 header and section header table (the System V gABI, "Sections"):
https://refspecs.linuxfoundation.org/elf/gabi4+/ch4.sheader.html
"""

from __future__ import annotations

import struct
from pathlib import Path

ELF_MAGIC = b"\x7fELF"


def section_names(path: Path) -> list[str]:
    """The names of ``path``'s sections; an empty list for a file that is not ELF-64 LSB."""
    data = path.read_bytes()
    if data[:4] != ELF_MAGIC or data[4] != 2 or data[5] != 1:  # ELFCLASS64, ELFDATA2LSB
        return []
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)

    def header(index: int) -> tuple[int, int, int]:
        """(sh_name, sh_offset, sh_size) of section ``index``."""
        at = shoff + index * shentsize
        (name,) = struct.unpack_from("<I", data, at)
        offset, size = struct.unpack_from("<QQ", data, at + 0x18)
        return name, offset, size

    _, strings_at, strings_size = header(shstrndx)
    strings = data[strings_at : strings_at + strings_size]
    return [
        strings[name : strings.index(b"\0", name)].decode()
        for name, _, _ in map(header, range(shnum))
    ]


def unstripped_sections(path: Path) -> list[str]:
    """What ``strip --strip-unneeded`` removes and ``path`` still has: the symbol table and
    debug sections (the dynamic symbols that loading needs stay in ``.dynsym``)."""
    return [name for name in section_names(path) if name == ".symtab" or name.startswith(".debug")]
