// Unit tests of what a collect reports from the flow generations, run by
// test/unit/native-loader.test.ts. Exit code 0 = every check passed.
#include <cstdio>
#include <cstring>
#include <vector>

#include "flow_generations.h"
#include "unit_check.h"

namespace {

dke_flow_key Key(uint32_t pid) {
  dke_flow_key k{};
  k.family = 2;
  k.proto = 6;
  k.direction = 1;
  k.pid = pid;
  k.remote_port = 80;
  return k;
}

// A generation's value with `sent` bytes and `closed` closes on lane 0 and `sent2` bytes on the last lane.
dke_flow_lanes Lanes(uint64_t sent, uint64_t closed = 0, uint64_t sent2 = 0) {
  dke_flow_lanes v{};
  v.lane[0].stats.bytes_sent = sent;
  v.lane[0].stats.closed = closed;
  v.lane[DKE_FLOW_LANES - 1].stats.bytes_sent += sent2;
  return v;
}

const dke_flow_delta* Find(const std::vector<dke_flow_delta>& ds, uint32_t pid) {
  for (const auto& d : ds)
    if (d.key.pid == pid) return &d;
  return nullptr;
}

void SumsLanesAndGenerationsPerKey() {
  dke::FlowSums s;
  s.Add(Key(1), Lanes(100, 1, 5));
  s.Add(Key(2), Lanes(7));
  s.Add(Key(1), Lanes(30, 2));  // the same flow in an older generation not yet durable
  auto ds = s.Take();
  CHECK(ds.size() == 2);
  const dke_flow_delta* one = Find(ds, 1);
  CHECK(one && one->delta.bytes_sent == 135 && one->delta.closed == 3);
  const dke_flow_delta* two = Find(ds, 2);
  CHECK(two && two->delta.bytes_sent == 7 && two->delta.closed == 0);
  CHECK(s.Take().empty());  // taken: the next collect starts from nothing
}

void LeavesOutFlowsWithNothingToReport() {
  dke::FlowSums s;
  s.Add(Key(1), Lanes(0));
  s.Add(Key(2), Lanes(1));
  auto ds = s.Take();
  CHECK(ds.size() == 1 && ds[0].key.pid == 2);
}

void KeepsWhatIsNotYetDurable() {
  dke::FlowGenerations g;
  g.Keep(10, 100);
  g.Keep(11, 101);  // collect 10's points never reached the spool: 11 reports both
  CHECK(g.kept().size() == 2);
  auto durable = g.TakeDurable(11);
  CHECK(durable.size() == 2 && durable[0].fd == 100 && durable[1].fd == 101);
  CHECK(g.kept().empty());
}

void LetsGoOnlyOfDurableCollects() {
  dke::FlowGenerations g;
  // As a restarted loader finds them pinned: in no particular order.
  g.Keep(30, 3);
  g.Keep(10, 1);
  g.Keep(20, 2);
  CHECK(g.kept().size() == 3 && g.kept()[0].seq == 10 && g.kept()[2].seq == 30);
  // The daemon says collect 20 was the last durable one (it died before spooling 30).
  auto durable = g.TakeDurable(20);
  CHECK(durable.size() == 2 && durable[0].seq == 10 && durable[1].seq == 20);
  CHECK(g.kept().size() == 1 && g.kept()[0].fd == 3);
  CHECK(g.TakeDurable(25).empty());
  CHECK(g.TakeDurable(30).size() == 1 && g.kept().empty());
}

}  // namespace

int main() {
  SumsLanesAndGenerationsPerKey();
  LeavesOutFlowsWithNothingToReport();
  KeepsWhatIsNotYetDurable();
  LetsGoOnlyOfDurableCollects();
  return dke::unit::Finish("flow generations");
}
