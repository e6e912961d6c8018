// What the collector reported for the benchmark's own connections. Every
// collector on the machine sees all traffic and other engineers' tests run
// beside us, so points are filtered by our server address and ports.
import type { ParsedFieldValue } from '../../../src/lineproto/parse';
import type { Receiver } from '../../../src/receiver/receiver';

export interface FlowCounts {
  /** tcp_established of the client side (direction=outgoing). */
  outgoingEstablished: number;
  /** tcp_established of the server side (direction=incoming). */
  incomingEstablished: number;
  outgoingClosed: number;
  incomingClosed: number;
  points: number;
}

const num = (v: ParsedFieldValue | undefined): number => (typeof v === 'bigint' ? Number(v) : typeof v === 'number' ? v : 0);

export function countFlows(receiver: Receiver, serverIp: string, firstPort: number, nports: number): FlowCounts {
  const out: FlowCounts = { outgoingEstablished: 0, incomingEstablished: 0, outgoingClosed: 0, incomingClosed: 0, points: 0 };
  for (const p of receiver.points('netflow')) {
    const t = p.tags;
    if (t.transport !== 'tcp' || t.server_ip !== serverIp) continue;
    const port = Number(t.server_port);
    if (!(port >= firstPort && port < firstPort + nports)) continue;
    out.points++;
    if (t.direction === 'outgoing') {
      out.outgoingEstablished += num(p.fields.tcp_established);
      out.outgoingClosed += num(p.fields.tcp_closed);
    } else {
      out.incomingEstablished += num(p.fields.tcp_established);
      out.incomingClosed += num(p.fields.tcp_closed);
    }
  }
  return out;
}
