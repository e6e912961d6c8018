// Frames on the loader's two pipes (native/frame.h): one writer to the
// daemon (fd 3), one reader of its commands (stdin). Blocking writes: the
// daemon reads all the time, and a daemon that stops reading is a daemon
// that is gone (EPIPE ends us, as EOF on stdin does).
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "frame.h"

namespace dke {

class FrameWriter {
 public:
  explicit FrameWriter(int fd) : fd_(fd) {}
  // `count` records of `record_size` bytes each.
  bool Records(uint16_t type, const void* data, size_t record_size, size_t count);
  bool Json(uint16_t type, const std::string& json);
  bool Log(const char* level, const std::string& msg);
  bool ok() const { return ok_; }

 private:
  bool Write(uint16_t type, const void* data, size_t len, uint32_t count);
  int fd_;
  bool ok_ = true;
};

// Accumulates stdin bytes and hands out whole frames.
class FrameReader {
 public:
  using Handler = std::function<void(const dke_frame& hdr, const uint8_t* payload)>;
  // Reads what is available; false on EOF or a read error, or a frame that
  // is not ours (then `error` says why).
  bool Pump(int fd, const Handler& on_frame, std::string* error);

 private:
  std::vector<uint8_t> buf_;
};

// JSON string literal of `s` (quotes included).
std::string JsonString(const std::string& s);

// A JSON array of `items`, quoted as strings or taken as JSON values.
std::string JsonArray(const std::vector<std::string>& items, bool quote);

// One DKE_FRAME_TELEMETRY frame: named counters, kernel ones summed over CPUs.
class TelemetryFrame {
 public:
  void Add(const char* name, uint64_t value);
  // Slot i of a PERCPU_ARRAY map, summed over CPUs, for each non-empty names[i].
  void AddPerCpu(int map_fd, const char* const* names, uint32_t count);
  bool Send(FrameWriter* out) const;

 private:
  std::vector<dke_telemetry_rec> recs_;
};

}  // namespace dke
