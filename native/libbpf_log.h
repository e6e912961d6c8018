// libbpf prints diagnostics (verifier logs, "failed to load") through a print
// callback. We keep the recent lines so that a failure can be thrown to JS as
// one readable error instead of being lost on stderr.
#pragma once
#include <string>

namespace dke {

void InstallLibbpfLogger();
// Clears the captured lines; call before an operation whose failure you report.
void ResetLibbpfLog();
// The last `max_lines` captured lines, joined with "\n".
std::string LibbpfLogTail(size_t max_lines = 12);
// The name of the program libbpf blamed last ("prog 'x': failed to load"), or "".
std::string LibbpfFailedProgram();

}  // namespace dke
