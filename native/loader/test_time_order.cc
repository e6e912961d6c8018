// Unit tests of TimeOrderedStage (records of per-CPU rings merged in time
// order), run by test/unit/native-loader.test.ts. Exit code 0 = every check passed.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "time_order.h"
#include "unit_check.h"

namespace {


struct Rec {
  uint64_t time;
  char what[8];
};

void Add(dke::TimeOrderedStage* s, uint64_t time, const char* what) {
  Rec r{time, {}};
  strncpy(r.what, what, sizeof(r.what) - 1);
  s->Add(&r, sizeof(r));
}

std::string DrainUpTo(dke::TimeOrderedStage* s, uint64_t upto) {
  std::string out;
  s->Drain(upto, [&](const void* rec, size_t len) {
    Rec r;
    CHECK(len == sizeof(r));
    memcpy(&r, rec, sizeof(r));
    out += std::string(r.what) + " ";
  });
  return out;
}

std::string DrainAll(dke::TimeOrderedStage* s) { return DrainUpTo(s, UINT64_MAX); }

void AnAnswerDrainedFromAnEarlierRingComesAfterItsQuery() {
  dke::TimeOrderedStage s;
  // CPU 0's ring: the answer (and a later query); CPU 1's ring: the first query.
  Add(&s, 200, "answer1");
  Add(&s, 300, "query2");
  Add(&s, 100, "query1");
  Add(&s, 400, "answer2");
  CHECK(DrainAll(&s) == "query1 answer1 query2 answer2 ");
  CHECK(s.size() == 0);
}

void RecordsAfterTheDrainBeganWaitForTheNextOne() {
  dke::TimeOrderedStage s;
  // The drain began at 250: the answer at 300 was read from CPU 0's ring,
  // its query (at 260) had not yet been written when CPU 1's ring was read.
  Add(&s, 100, "query1");
  Add(&s, 300, "answer2");
  Add(&s, 200, "answer1");
  CHECK(DrainUpTo(&s, 250) == "query1 answer1 ");
  CHECK(s.size() == 1);
  Add(&s, 260, "query2");  // the next drain
  Add(&s, 500, "late");
  CHECK(DrainUpTo(&s, 400) == "query2 answer2 ");
  CHECK(DrainAll(&s) == "late ");
}

void RecordsOfTheSameTimeKeepTheirRingOrder() {
  dke::TimeOrderedStage s;
  Add(&s, 5, "a");
  Add(&s, 5, "b");
  Add(&s, 1, "c");
  CHECK(DrainAll(&s) == "c a b ");
}

void ADrainStartsEmpty() {
  dke::TimeOrderedStage s;
  Add(&s, 1, "x");
  CHECK(DrainAll(&s) == "x ");
  CHECK(DrainAll(&s).empty());
  Add(&s, 2, "y");  // the stage is reused
  CHECK(DrainAll(&s) == "y ");
}

void AShortRecordStillGoesOut() {
  dke::TimeOrderedStage s;
  const char tiny[3] = {'a', 'b', 'c'};
  s.Add(tiny, sizeof(tiny));
  size_t seen = 0;
  s.Drain(UINT64_MAX, [&](const void* rec, size_t len) {
    seen = len;
    CHECK(memcmp(rec, tiny, 3) == 0);
  });
  CHECK(seen == 3);
}

}  // namespace

int main() {
  AnAnswerDrainedFromAnEarlierRingComesAfterItsQuery();
  RecordsAfterTheDrainBeganWaitForTheNextOne();
  RecordsOfTheSameTimeKeepTheirRingOrder();
  ADrainStartsEmpty();
  AShortRecordStillGoesOut();
  return dke::unit::Finish("time order");
}
