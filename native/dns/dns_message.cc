#include "dns_message.h"

namespace dke::dns {
namespace {

inline uint16_t U16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }

inline uint32_t U32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

// Appends one label's text: lower case, \DDD for what dig would escape.
inline void AppendLabel(const uint8_t* p, size_t n, NameText* out) {
  char* t = out->text + out->len;
  for (size_t i = 0; i < n; i++) {
    uint8_t c = p[i];
    if (c >= 'A' && c <= 'Z') c += 0x20;
    if (c > 0x20 && c < 0x7f && c != '.' && c != '\\') {
      *t++ = static_cast<char>(c);
    } else {
      *t++ = '\\';
      *t++ = static_cast<char>('0' + c / 100);
      *t++ = static_cast<char>('0' + (c / 10) % 10);
      *t++ = static_cast<char>('0' + c % 10);
    }
  }
  out->len = static_cast<uint32_t>(t - out->text);
}

}  // namespace

bool ReadName(const uint8_t* buf, size_t len, size_t off, NameText* out, size_t* next, int* jumps_out) {
  size_t octets = 1;  // the root label
  size_t pos = off;
  size_t after = 0;  // 0: not known yet (a name never ends at offset 0)
  int jumps = 0;
  // Pointers may only go below this: the start of the earliest label read so far.
  size_t floor = off;
  bool labels = false;
  if (out) out->len = 0;
  for (;;) {
    if (pos >= len) return false;
    uint8_t l = buf[pos];
    if (l == 0) {
      if (after == 0) after = pos + 1;
      break;
    }
    uint8_t kind = l & 0xc0;
    if (kind == 0xc0) {
      if (pos + 1 >= len) return false;
      size_t target = (size_t{l & 0x3fu} << 8) | buf[pos + 1];
      if (target >= floor) return false;  // forward or self pointer: a loop or garbage
      if (++jumps > kMaxPointerJumps) return false;
      if (after == 0) after = pos + 2;
      pos = target;
      floor = target;
      continue;
    }
    if (kind != 0) return false;  // 0x40/0x80: obsolete extended label types
    octets += l + 1u;
    if (octets > kMaxNameOctets) return false;
    if (pos + 1 + l > len) return false;
    if (out) {
      if (labels) out->text[out->len++] = '.';
      AppendLabel(buf + pos + 1, l, out);
    }
    labels = true;
    pos += 1 + l;
  }
  if (out) {
    if (!labels) out->text[out->len++] = '.';
    out->text[out->len] = '\0';
  }
  *next = after;
  if (jumps_out) *jumps_out = jumps;
  return true;
}

bool ReadCnameTarget(const uint8_t* buf, size_t len, const Answer& a, NameText* out) {
  if (a.type != kTypeCname) return false;
  size_t end = size_t{a.rdata_off} + a.rdlen;
  if (end > len) return false;
  size_t next;
  return ReadName(buf, len, a.rdata_off, out, &next) && next <= end;
}

bool ParseMessage(const uint8_t* buf, size_t len, ParseDepth depth, Message* m) {
  if (len < kHeaderLen) return false;
  uint16_t flags = U16(buf + 2);
  m->id = U16(buf);
  m->qr = (flags & 0x8000) != 0;
  m->opcode = (flags >> 11) & 0xf;
  m->rcode = flags & 0xf;
  m->tc = (flags & 0x0200) != 0;
  m->qdcount = U16(buf + 4);
  m->ancount = U16(buf + 6);
  m->nscount = U16(buf + 8);
  m->arcount = U16(buf + 10);
  m->n_questions = 0;
  m->n_answers = 0;
  m->truncated = false;
  size_t off = kHeaderLen;

  for (size_t i = 0; i < m->qdcount; i++) {
    size_t next;
    // Past kMaxQuestions the rest of the message is not worth finding.
    if (i >= kMaxQuestions || !ReadName(buf, len, off, nullptr, &next) || next + 4 > len) {
      m->truncated = true;
      return true;
    }
    m->questions[m->n_questions++] = {static_cast<uint32_t>(off), U16(buf + next), U16(buf + next + 2)};
    off = next + 4;
  }
  size_t total = size_t{m->ancount} + m->nscount + m->arcount;
  if (depth == ParseDepth::kQuestions) {
    m->truncated = total > 0;
    return true;
  }

  for (size_t i = 0; i < total; i++) {
    size_t next;
    if (i >= kMaxRecords || !ReadName(buf, len, off, nullptr, &next) || next + 10 > len) {
      m->truncated = true;
      break;
    }
    uint16_t type = U16(buf + next);
    uint32_t ttl = U32(buf + next + 4);
    uint16_t rdlen = U16(buf + next + 8);
    size_t rdata = next + 10;
    if (rdata + rdlen > len) {
      m->truncated = true;
      break;
    }
    if (i < m->ancount) {
      if (m->n_answers < kMaxAnswers) {
        m->answers[m->n_answers++] = {static_cast<uint32_t>(off), type, U16(buf + next + 2), ttl,
                                      static_cast<uint32_t>(rdata), rdlen};
      }
    } else if (i >= size_t{m->ancount} + m->nscount && type == kTypeOpt) {
      // RFC 6891: the OPT TTL's top byte extends the 4-bit rcode.
      m->rcode |= static_cast<int32_t>((ttl >> 24) << 4);
    }
    off = rdata + rdlen;
  }
  return true;
}

}  // namespace dke::dns
