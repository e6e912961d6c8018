// The ebpf-bash loader: a uretprobe on readline() in each bash binary, its
// lines forwarded as they come (DKE_FRAME_BASH_LINES). Not pinned: a typed
// command is an event, and a loader that dies takes its probes with it.
#pragma once
#include <string>
#include <vector>

#include "frame_io.h"
#include "plugin.h"

struct bash;
struct bpf_link;
struct ring_buffer;

namespace dke {

struct BashOptions {
  std::vector<std::string> paths;  // as the user gave them (or the defaults)
  bool explicit_paths = false;     // the user named them: a missing one is worth a warning
};

class BashLoader : public LoaderPlugin {
 public:
  BashLoader(BashOptions opts, FrameWriter* out) : opts_(std::move(opts)), out_(out) {}
  ~BashLoader() override { Close(false); }
  bool Open() override;
  int PollFd() const override;
  void Drain() override;
  void Collect(uint64_t seq, uint32_t what) override;
  void Close(bool unpin) override;

 private:
  static int OnLine(void* ctx, void* data, size_t size);
  void Flush();

  BashOptions opts_;
  FrameWriter* out_;
  bash* skel_ = nullptr;
  std::vector<bpf_link*> links_;
  ring_buffer* rb_ = nullptr;
  std::vector<uint8_t> batch_;
  size_t batched_ = 0;
};

}  // namespace dke
