#include "frame_io.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace dke {

bool FrameWriter::Write(uint16_t type, const void* data, size_t len, uint32_t count) {
  if (!ok_ || len > UINT32_MAX) return false;
  dke_frame hdr{};
  hdr.magic = DKE_FRAME_MAGIC | DKE_FRAME_VERSION;
  hdr.type = type;
  hdr.len = static_cast<uint32_t>(len);
  hdr.count = count;
  // One buffer, one write: frames never interleave even if a second writer appears.
  std::vector<uint8_t> out(sizeof(hdr) + len);
  memcpy(out.data(), &hdr, sizeof(hdr));
  if (len) memcpy(out.data() + sizeof(hdr), data, len);
  size_t off = 0;
  while (off < out.size()) {
    ssize_t n = write(fd_, out.data() + off, out.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      ok_ = false;
      return false;
    }
    off += static_cast<size_t>(n);
  }
  return true;
}

bool FrameWriter::Records(uint16_t type, const void* data, size_t record_size, size_t count) {
  // Large batches go in pieces so a frame stays well under the u32 length.
  constexpr size_t kMaxFrameBytes = 4 << 20;
  const size_t per = record_size ? std::max<size_t>(1, kMaxFrameBytes / record_size) : count;
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t done = 0; done < count;) {
    size_t n = std::min(per, count - done);
    if (!Write(type, p + done * record_size, n * record_size, static_cast<uint32_t>(n))) return false;
    done += n;
  }
  return true;
}

bool FrameWriter::Json(uint16_t type, const std::string& json) { return Write(type, json.data(), json.size(), 0); }

bool FrameWriter::Log(const char* level, const std::string& msg) {
  return Json(DKE_FRAME_LOG, std::string("{\"level\":\"") + level + "\",\"msg\":" + JsonString(msg) + "}");
}

bool FrameReader::Pump(int fd, const Handler& on_frame, std::string* error) {
  uint8_t chunk[65536];
  ssize_t n;
  do {
    n = read(fd, chunk, sizeof(chunk));
  } while (n < 0 && errno == EINTR);
  if (n < 0 && errno == EAGAIN) return true;
  if (n <= 0) return false;
  buf_.insert(buf_.end(), chunk, chunk + n);
  size_t off = 0;
  while (buf_.size() - off >= sizeof(dke_frame)) {
    dke_frame hdr;
    memcpy(&hdr, buf_.data() + off, sizeof(hdr));
    if (hdr.magic != (DKE_FRAME_MAGIC | DKE_FRAME_VERSION)) {
      *error = "the daemon speaks another frame version (the daemon and dke-loader come from different builds)";
      return false;
    }
    if (buf_.size() - off - sizeof(hdr) < hdr.len) break;
    on_frame(hdr, buf_.data() + off + sizeof(hdr));
    off += sizeof(hdr) + hdr.len;
  }
  buf_.erase(buf_.begin(), buf_.begin() + static_cast<long>(off));
  return true;
}

std::string JsonArray(const std::vector<std::string>& items, bool quote) {
  std::string s = "[";
  for (size_t i = 0; i < items.size(); i++) s += (i ? "," : "") + (quote ? JsonString(items[i]) : items[i]);
  return s + "]";
}

void TelemetryFrame::Add(const char* name, uint64_t value) {
  dke_telemetry_rec r{};
  strncpy(r.name, name, sizeof(r.name) - 1);
  r.value = value;
  recs_.push_back(r);
}

void TelemetryFrame::AddPerCpu(int map_fd, const char* const* names, uint32_t count) {
  int ncpu = libbpf_num_possible_cpus();
  std::vector<uint64_t> per_cpu(static_cast<size_t>(ncpu > 0 ? ncpu : 1));
  for (uint32_t i = 0; i < count; i++) {
    if (!names[i][0]) continue;
    uint64_t sum = 0;
    if (map_fd >= 0 && bpf_map_lookup_elem(map_fd, &i, per_cpu.data()) == 0)
      for (uint64_t v : per_cpu) sum += v;
    Add(names[i], sum);
  }
}

bool TelemetryFrame::Send(FrameWriter* out) const {
  return out->Records(DKE_FRAME_TELEMETRY, recs_.data(), sizeof(dke_telemetry_rec), recs_.size());
}

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char b[8];
          snprintf(b, sizeof(b), "\\u%04x", c);
          out += b;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

}  // namespace dke
