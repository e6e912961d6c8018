// netflow's side of folding (src/lineproto/fold.ts): past --max-flows flow
// keys in one interval, the smallest flows fold into one point per direction,
// transport and family (and whatever else classifies: host, service, the
// user's tags), with every tag that names one peer or process set to `*`.
// Byte, retransmit and connection counts add up; rtt and rtt_var are a mean
// weighted by tcp_established + 1 (a flow that opened many connections speaks
// for them, one that opened none still counts once).
import { foldPoints, type FoldResult, type FoldSpec } from '../lineproto/fold';
import type { Point } from '../lineproto/point';

const K8S_TAGS = ['src', 'dst', 'client', 'server'].flatMap((side) =>
  ['namespace', 'pod_name', 'service_name', 'deployment_name', 'workload_name', 'workload_type'].map((what) => `${side}_k8s_${what}`),
);

const num = (p: Point, field: string): number => {
  const v = p.fields[field];
  return typeof v === 'number' ? v : typeof v === 'bigint' ? Number(v) : 0;
};

const byConnections = { mean: (p: Point) => num(p, 'tcp_established') + 1 };

export const NETFLOW_FOLD: FoldSpec = {
  foldTags: [
    'src_ip', 'dst_ip', 'src_port', 'dst_port', 'src_ip_type', 'dst_ip_type', 'pid', 'process_name', 'netns',
    'dst_domain', 'dst_nat_ip', 'dst_nat_port',
    'client_ip', 'client_port', 'client_ip_type', 'server_ip', 'server_port', 'server_ip_type', 'server_domain',
    ...K8S_TAGS,
  ],
  size: (p) => num(p, 'bytes_read') + num(p, 'bytes_written'),
  fields: { rtt: byConnections, rtt_var: byConnections },
};

/** One interval's netflow points with at most `maxFlows` flow keys kept (0: all), the rest folded. */
export function foldNetflow(points: Point[], maxFlows: number): FoldResult {
  return foldPoints(points, maxFlows, NETFLOW_FOLD);
}
