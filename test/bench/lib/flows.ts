// What the collector reported for the benchmark's own traffic. Every
// collector on the machine sees all traffic and other engineers' tests run
// beside us, so points are filtered by our server address and ports.
import type { ParsedFieldValue, ParsedPoint } from '../../../src/lineproto/parse';
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

/** Field sums of one side of our flows. */
export interface SideSums {
  bytes_read: number;
  bytes_written: number;
  retransmits: number;
  tcp_established: number;
  tcp_closed: number;
  points: number;
}

export interface FlowSums {
  /** The client's side (direction=outgoing), on the client's host. */
  client: SideSums;
  /** The server's side (direction=incoming). */
  server: SideSums;
}

const emptySide = (): SideSums => ({ bytes_read: 0, bytes_written: 0, retransmits: 0, tcp_established: 0, tcp_closed: 0, points: 0 });

function ours(p: ParsedPoint, transport: string, serverIp: string, firstPort: number, nports: number): boolean {
  const t = p.tags;
  if (t.transport !== transport || t.server_ip !== serverIp) return false;
  const port = Number(t.server_port);
  return port >= firstPort && port < firstPort + nports;
}

/** netflow field sums per side for `transport` flows to serverIp:firstPort..firstPort+nports-1. */
export function sumFlows(receiver: Receiver, transport: 'tcp' | 'udp', serverIp: string, firstPort: number, nports: number): FlowSums {
  const out: FlowSums = { client: emptySide(), server: emptySide() };
  for (const p of receiver.points('netflow')) {
    if (!ours(p, transport, serverIp, firstPort, nports)) continue;
    const side = p.tags.direction === 'outgoing' ? out.client : out.server;
    side.points++;
    side.bytes_read += num(p.fields.bytes_read);
    side.bytes_written += num(p.fields.bytes_written);
    side.retransmits += num(p.fields.retransmits);
    side.tcp_established += num(p.fields.tcp_established);
    side.tcp_closed += num(p.fields.tcp_closed);
  }
  return out;
}

export function countFlows(receiver: Receiver, serverIp: string, firstPort: number, nports: number): FlowCounts {
  const s = sumFlows(receiver, 'tcp', serverIp, firstPort, nports);
  return {
    outgoingEstablished: s.client.tcp_established,
    incomingEstablished: s.server.tcp_established,
    outgoingClosed: s.client.tcp_closed,
    incomingClosed: s.server.tcp_closed,
    points: s.client.points + s.server.points,
  };
}

export interface DnsCounts {
  /** Lookups the client's side reported (conn_side=client), by rcode_name. */
  client: Record<string, number>;
  /** Lookups the resolver's side reported (conn_side=server). */
  server: Record<string, number>;
  clientTotal: number;
  serverTotal: number;
}

/** dnsflow `count` sums for lookups to serverIp:port, per side and rcode. */
export function countDns(receiver: Receiver, serverIp: string, port: number): DnsCounts {
  const out: DnsCounts = { client: {}, server: {}, clientTotal: 0, serverTotal: 0 };
  for (const p of receiver.points('dnsflow')) {
    const t = p.tags;
    if (t.server_ip !== serverIp || Number(t.server_port) !== port) continue;
    const n = num(p.fields.count);
    const rc = String(t.rcode_name ?? p.fields.rcode);
    if (t.conn_side === 'server') {
      out.server[rc] = (out.server[rc] ?? 0) + n;
      out.serverTotal += n;
    } else {
      out.client[rc] = (out.client[rc] ?? 0) + n;
      out.clientTotal += n;
    }
  }
  return out;
}
