// Where a function lives in an ELF file, as a uprobe needs it: the file
// offset of a defined function symbol. libbpf 1.1 does this internally for
// perf uprobes but does not export it, and a uprobe_multi link takes raw
// offsets; it is also how we tell "this bash exports readline" before
// attaching anything. 64-bit little-endian ELF only (x86_64, arm64).
import fs from 'node:fs';

const SHT_SYMTAB = 2;
const SHT_DYNSYM = 11;
const STT_FUNC = 2;
const SHN_UNDEF = 0;
const SHN_LORESERVE = 0xff00;

export class ElfError extends Error {}

interface Section {
  type: number;
  addr: bigint;
  offset: number;
  size: number;
  link: number;
  entsize: number;
}

/**
 * File offset of the defined function `name` (from .symtab, else .dynsym), or
 * undefined when the file has no such function (stripped of it, or it only
 * imports it from a shared library). Throws ElfError when the file is not a
 * 64-bit little-endian ELF.
 */
export function findFunctionOffset(buf: Buffer, name: string): number | undefined {
  if (buf.length < 64 || buf.readUInt32BE(0) !== 0x7f454c46) throw new ElfError('not an ELF file');
  if (buf[4] !== 2 || buf[5] !== 1) throw new ElfError('not a 64-bit little-endian ELF file');
  const shoff = Number(buf.readBigUInt64LE(0x28));
  const shentsize = buf.readUInt16LE(0x3a);
  const shnum = buf.readUInt16LE(0x3c);
  if (shoff === 0 || shentsize < 64 || shoff + shnum * shentsize > buf.length) throw new ElfError('no readable section headers');
  const sections: Section[] = [];
  for (let i = 0; i < shnum; i++) {
    const o = shoff + i * shentsize;
    sections.push({
      type: buf.readUInt32LE(o + 4),
      addr: buf.readBigUInt64LE(o + 16),
      offset: Number(buf.readBigUInt64LE(o + 24)),
      size: Number(buf.readBigUInt64LE(o + 32)),
      link: buf.readUInt32LE(o + 40),
      entsize: Number(buf.readBigUInt64LE(o + 56)),
    });
  }
  const want = Buffer.from(`${name}\0`);
  for (const type of [SHT_SYMTAB, SHT_DYNSYM]) {
    for (const symtab of sections.filter((s) => s.type === type)) {
      const strtab = sections[symtab.link];
      if (!strtab || symtab.entsize < 24) continue;
      for (let o = symtab.offset; o + 24 <= symtab.offset + symtab.size && o + 24 <= buf.length; o += symtab.entsize) {
        const nameOff = strtab.offset + buf.readUInt32LE(o);
        if (nameOff + want.length > buf.length || buf.compare(want, 0, want.length, nameOff, nameOff + want.length) !== 0) continue;
        const kind = buf[o + 4]! & 0xf;
        const shndx = buf.readUInt16LE(o + 6);
        if (kind !== STT_FUNC || shndx === SHN_UNDEF || shndx >= SHN_LORESERVE) continue;
        const sec = sections[shndx];
        if (!sec) continue;
        const value = buf.readBigUInt64LE(o + 8);
        return Number(value - sec.addr) + sec.offset;
      }
    }
  }
  return undefined;
}

/** findFunctionOffset on a file. */
export function findFunctionOffsetInFile(path: string, name: string): number | undefined {
  return findFunctionOffset(fs.readFileSync(path), name);
}
