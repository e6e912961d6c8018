// Unit tests of FlowMarks (what a collect reports), run by
// test/unit/native-loader.test.ts. Exit code 0 = every check passed.
#include <cstdio>
#include <cstring>
#include <vector>

#include "flow_marks.h"
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

dke_flow_stats Stats(uint64_t sent, uint64_t recv, uint64_t est = 0, uint64_t closed = 0) {
  dke_flow_stats s{};
  s.bytes_sent = sent;
  s.bytes_received = recv;
  s.established = est;
  s.closed = closed;
  return s;
}

void ReportsDifferencesAgainstWhatWasCommitted() {
  dke::FlowMarks m;
  auto s1 = m.Collect(1, {Key(1)}, {Stats(100, 10, 1)});
  CHECK(s1.deltas.size() == 1 && s1.deltas[0].delta.bytes_sent == 100 && s1.deltas[0].delta.established == 1);
  m.Commit(1);
  auto s2 = m.Collect(2, {Key(1)}, {Stats(150, 10, 1, 1)});
  CHECK(s2.deltas.size() == 1 && s2.deltas[0].delta.bytes_sent == 50 && s2.deltas[0].delta.bytes_received == 0);
  CHECK(s2.deltas[0].delta.established == 0 && s2.deltas[0].delta.closed == 1);
}

void ReportsAgainWhatWasNeverCommitted() {
  dke::FlowMarks m;
  m.Collect(1, {Key(1)}, {Stats(100, 0)});
  // collect 1's points never reached the spool: no Commit(1)
  auto s2 = m.Collect(2, {Key(1)}, {Stats(130, 0)});
  CHECK(s2.deltas.size() == 1 && s2.deltas[0].delta.bytes_sent == 130);
}

void ResumeAfterACrashKeepsOnlyDurableCollects() {
  dke::FlowMarks a;
  a.Collect(1, {Key(1), Key(2)}, {Stats(100, 0), Stats(7, 0)});
  a.Commit(1);
  a.Collect(2, {Key(1), Key(2)}, {Stats(180, 0), Stats(9, 0)});  // the daemon dies before spooling 2
  // A new loader restores the pinned marks; the daemon says collect 1 is the last durable one.
  dke::FlowMarks b;
  for (const auto& [k, v] : a.marks()) b.Restore(k, v);
  b.Resume(1);
  auto s = b.Collect(3, {Key(1), Key(2)}, {Stats(200, 0), Stats(9, 0)});
  uint64_t sent = 0;
  for (const auto& d : s.deltas) sent += d.delta.bytes_sent;
  CHECK(sent == (200 - 100) + (9 - 7));
  // And when collect 2 did reach the spool:
  dke::FlowMarks c;
  for (const auto& [k, v] : a.marks()) c.Restore(k, v);
  c.Resume(2);
  auto s3 = c.Collect(3, {Key(1), Key(2)}, {Stats(200, 0), Stats(9, 0)});
  CHECK(s3.deltas.size() == 1 && s3.deltas[0].delta.bytes_sent == 20);
}

void RemovesQuietFlowsAndReportsTheirResidual() {
  dke::FlowMarks m;
  m.Collect(1, {Key(1)}, {Stats(100, 0)});
  m.Commit(1);
  dke::FlowMarks::Step s;
  for (uint64_t seq = 2; seq < 2 + dke::FlowMarks::kIdleCollectsBeforeRemoval; seq++) {
    s = m.Collect(seq, {Key(1)}, {Stats(100, 0)});
    CHECK(s.deltas.empty());
  }
  CHECK(s.to_remove.size() == 1);
  dke_flow_delta residual;
  // 5 bytes arrived between the read and the removal.
  CHECK(m.Removed(Key(1), Stats(105, 0), &residual) && residual.delta.bytes_sent == 5);
  CHECK(m.marks().empty());
  // The socket speaks again: the kernel re-created the flow from zero.
  auto again = m.Collect(9, {Key(1)}, {Stats(3, 0)});
  CHECK(again.deltas.size() == 1 && again.deltas[0].delta.bytes_sent == 3);
}

void AFlowCreatedAnewBelowItsMarkIsAllNew() {
  dke::FlowMarks m;
  m.Collect(1, {Key(1)}, {Stats(100, 50)});
  m.Commit(1);
  auto s = m.Collect(2, {Key(1)}, {Stats(20, 60)});  // removed by someone, re-created
  CHECK(s.deltas.size() == 1 && s.deltas[0].delta.bytes_sent == 20 && s.deltas[0].delta.bytes_received == 60);
}

void ForgetsMarksOfFlowsGoneFromTheKernel() {
  dke::FlowMarks m;
  m.Collect(1, {Key(1), Key(2)}, {Stats(1, 0), Stats(2, 0)});
  auto s = m.Collect(2, {Key(2)}, {Stats(2, 0)});
  CHECK(s.forgotten.size() == 1 && s.forgotten[0].pid == 1);
  CHECK(m.marks().size() == 1);
}

void SumsTheLanesOfAFlow() {
  dke_flow_lanes l{};
  l.lane[0].stats = Stats(1, 2, 1, 0);
  l.lane[0].stats.rtt_sum_us = 7;
  l.lane[DKE_FLOW_LANES - 1].stats = Stats(10, 20, 0, 1);
  l.lane[DKE_FLOW_LANES - 1].stats.rtt_count = 1;
  l.lane[0]._lead[0] = 99;  // padding is never a counter
  l._tail[0] = 99;
  dke_flow_stats s = dke::SumLanes(l);
  CHECK(s.bytes_sent == 11 && s.bytes_received == 22 && s.established == 1 && s.closed == 1);
  CHECK(s.rtt_sum_us == 7 && s.rtt_count == 1 && s.retransmits == 0);
}

}  // namespace

int main() {
  SumsTheLanesOfAFlow();
  ReportsDifferencesAgainstWhatWasCommitted();
  ReportsAgainWhatWasNeverCommitted();
  ResumeAfterACrashKeepsOnlyDurableCollects();
  RemovesQuietFlowsAndReportsTheirResidual();
  AFlowCreatedAnewBelowItsMarkIsAllNew();
  ForgetsMarksOfFlowsGoneFromTheKernel();
  return dke::unit::Finish("flow marks");
}
