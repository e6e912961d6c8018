// The daemon's typed view of the ebpf-net loader child for netflow: decoded
// map snapshots, UDP flow removal and close events.
import { decodeSockOwnerMap, decodeTcpConnMap, decodeTcpConns, decodeUdpFlowMap } from '../loader/layout';
import type { SockOwnerRecord, TcpConnRecord, UdpFlowRecord } from '../loader/layout';
import { NET_STREAM_TCP_CLOSED, type NetSnapshotReply } from '../loader/plugins/net';
import { asBuffer } from '../loader/protocol';
import type { LoaderSupervisor } from '../loader/supervisor';

export interface Snapshot {
  /** Loader generation the maps belong to (bumped at every child restart). */
  generation: number;
  tcp: TcpConnRecord[];
  udp: UdpFlowRecord[];
  owners: SockOwnerRecord[];
  telemetry: number[];
}

export class NetflowSource {
  constructor(private readonly loader: LoaderSupervisor) {}

  onClosed(handler: (records: TcpConnRecord[], generation: number) => void, onError: (err: Error) => void): void {
    this.loader.on('event', (stream, records, generation) => {
      if (stream !== NET_STREAM_TCP_CLOSED) return;
      try {
        handler(decodeTcpConns(records), generation);
      } catch (err) {
        onError(err as Error);
      }
    });
  }

  async snapshot(): Promise<Snapshot> {
    const generation = this.loader.generation;
    const r = await this.loader.request<NetSnapshotReply>('snapshot');
    return {
      generation,
      tcp: decodeTcpConnMap(asBuffer(r.tcp)),
      udp: decodeUdpFlowMap(asBuffer(r.udp)),
      owners: decodeSockOwnerMap(asBuffer(r.owners)),
      telemetry: r.telemetry,
    };
  }

  /** Deletes closed connections' entries (their final counts are handed off). */
  async deleteTcp(cookies: bigint[]): Promise<void> {
    if (cookies.length === 0) return;
    const keys = Buffer.alloc(cookies.length * 8);
    cookies.forEach((c, i) => keys.writeBigUInt64LE(c, i * 8));
    await this.loader.request<number>('deleteTcp', keys);
  }

  /** Removes UDP flows from the kernel map; returns their final counters. */
  async deleteUdp(keys: Buffer[]): Promise<UdpFlowRecord[]> {
    if (keys.length === 0) return [];
    const r = await this.loader.request<Uint8Array>('deleteUdp', Buffer.concat(keys));
    return decodeUdpFlowMap(asBuffer(r));
  }
}
