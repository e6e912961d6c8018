// Values (virtual addresses) of named symbols in an ELF file, from its
// .symtab or .dynsym: what a uprobe needs besides a function's offset (the
// bash loader reads where readline's line buffer lives).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace dke {

// name -> st_value of each of `names` the file defines (absent: not found,
// or not an ELF file).
std::map<std::string, uint64_t> ElfSymbolValues(const std::string& path, const std::vector<std::string>& names);

}  // namespace dke
