// DNS wire format (RFC 1035) for what dnsflow needs: the header, the
// questions, and the answer records, with names read on demand. Input comes
// from the network (anyone can send any bytes to a port we watch), so the
// parser is total: every read is bounds-checked, compression pointers may only
// point backwards (so they cannot loop) and are counted, names, labels and
// records are capped, and a message cut short (by capture or by a liar's
// counts) yields what was read before the cut, flagged `truncated`. Same
// rules as src/dnsflow/parser.ts, which this replaces on the loader side.
#pragma once

#include <cstddef>
#include <cstdint>

namespace dke::dns {

constexpr size_t kHeaderLen = 12;
constexpr uint16_t kTypeA = 1;
constexpr uint16_t kTypeCname = 5;
constexpr uint16_t kTypeAaaa = 28;
constexpr uint16_t kTypeOpt = 41;
constexpr uint16_t kClassIn = 1;

// RFC 1035 2.3.4: a name is at most 255 octets on the wire.
constexpr size_t kMaxNameOctets = 255;
// A name has at most 127 labels; a well-formed one needs no more jumps than that.
constexpr int kMaxPointerJumps = 128;
// A real message has one question; a few more are read, none are kept beyond.
constexpr size_t kMaxQuestions = 4;
// Answers kept per message (an A record set of a large pool is ~30).
constexpr size_t kMaxAnswers = 64;
// Records walked in all sections; the rest are not looked at.
constexpr size_t kMaxRecords = 256;
// Longest name text: every octet but the root's escaped as \DDD.
constexpr size_t kMaxNameText = 4 * kMaxNameOctets;

struct Question {
  uint32_t name_off;  // where its name starts in the message
  uint16_t type;
  uint16_t cls;
};

struct Answer {
  uint32_t name_off;  // owner name
  uint16_t type;
  uint16_t cls;
  uint32_t ttl;  // seconds
  uint32_t rdata_off;
  uint16_t rdlen;
};

struct Message {
  uint16_t id;
  bool qr;  // an answer (response), not a query
  uint8_t opcode;
  bool tc;  // the server cut the answer to fit (the client retries over TCP)
  // Not every record the counts announce could be read (or records were not asked for).
  bool truncated;
  int32_t rcode;  // extended by the EDNS OPT record when there is one
  uint16_t qdcount, ancount, nscount, arcount;
  uint32_t n_questions;
  uint32_t n_answers;  // answer-section records kept, at most kMaxAnswers
  Question questions[kMaxQuestions];
  Answer answers[kMaxAnswers];
};

enum class ParseDepth {
  kQuestions,  // header and questions: enough to record a query
  kAll,        // and every record (answers kept, OPT read for the extended rcode)
};

// Parses the `len` bytes at `buf`; false when they are shorter than a header.
bool ParseMessage(const uint8_t* buf, size_t len, ParseDepth depth, Message* m);

// A name as text: lower case, labels joined by '.', bytes that are not
// printable (and dots or backslashes inside a label) as \DDD, as dig prints
// them; the root is ".".
struct NameText {
  uint32_t len;
  char text[kMaxNameText + 1];  // NUL-terminated
};

// Walks the name at `off`: true and *next = the offset after it in place
// (after its first pointer, if any) when it is well formed and inside the
// buffer; *jumps = pointers followed. `out` may be null (validation only).
bool ReadName(const uint8_t* buf, size_t len, size_t off, NameText* out, size_t* next, int* jumps = nullptr);

// The target of a CNAME answer, which may point back into the message but
// must end inside its own record.
bool ReadCnameTarget(const uint8_t* buf, size_t len, const Answer& a, NameText* out);

}  // namespace dke::dns
