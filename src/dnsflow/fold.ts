// dnsflow's side of folding (src/lineproto/fold.ts): past the cap, the
// smallest lookup groups fold into one point per direction, transport, family
// and rcode, with addresses, ports and domains `*`. `count` adds up,
// `latency` is the mean weighted by `count` (exact: an rcode's lookups are all
// answered, or all timeouts with latency 0), `latency_max` the largest.
import { foldPoints, type FoldResult, type FoldSpec } from '../lineproto/fold';
import type { Point } from '../lineproto/point';

const count = (p: Point): number => {
  const v = p.fields.count;
  return typeof v === 'number' ? v : typeof v === 'bigint' ? Number(v) : 0;
};

export const DNSFLOW_FOLD: FoldSpec = {
  foldTags: [
    'src_ip', 'dst_ip', 'src_port', 'dst_port', 'src_ip_type', 'dst_ip_type', 'dst_domain', 'netns', 'pid', 'process_name',
    'client_ip', 'client_port', 'client_ip_type', 'server_ip', 'server_port', 'server_ip_type', 'server_domain',
  ],
  size: count,
  // rcode_name is a tag that is not folded, so rcode is one value per folded point.
  fields: { rcode: 'max', latency: { mean: count }, latency_max: 'max' },
};

/** One flush's dnsflow points with at most `maxFlows` groups kept (0: all), the rest folded. */
export function foldDnsflow(points: Point[], maxFlows: number): FoldResult {
  return foldPoints(points, maxFlows, DNSFLOW_FOLD);
}
