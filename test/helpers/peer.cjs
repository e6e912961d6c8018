#!/usr/bin/env node
// A traffic peer for end-to-end tests, run inside a network namespace with
// `ip netns exec`. It moves exact byte counts and prints what it did as one
// JSON line, which is the ground truth the tests compare the collector with.
//
//   tcp-server <host> <port> <replyBytes>       echo-style: read to EOF, reply, close
//   tcp-client <host> <port> <conns> <sendBytes> [holdMs]
//   tcp-hold   <host> <port> <conns>            conns open at once, one byte sent on each; held until SIGTERM
//   udp-server <host> <port> <replyBytes>       reply to every datagram
//   udp-client <host> <port> <count> <sendBytes> <replyBytes>
//   udp-spray  <host> <firstPort> <count> <bytes>    one datagram to each of count ports
'use strict';
const net = require('node:net');
const dgram = require('node:dgram');

const [mode, host, portArg, a, b, c] = process.argv.slice(2);
const port = Number(portArg);
// The kernel reports the thread's comm; give the test a name to look for.
process.title = mode.startsWith('tcp') ? `dke-${mode}` : `dke-${mode}`;

function out(obj) {
  process.stdout.write(`${JSON.stringify({ pid: process.pid, ...obj })}\n`);
}

if (mode === 'tcp-server') {
  const reply = Buffer.alloc(Number(a), 0x72);
  let conns = 0;
  const server = net.createServer((s) => {
    conns++;
    s.on('data', () => {});
    s.on('end', () => s.end(reply));
    s.on('error', () => {});
  });
  server.listen(port, host, () => out({ listening: true }));
  process.on('SIGTERM', () => {
    out({ conns });
    process.exit(0);
  });
} else if (mode === 'tcp-client') {
  const conns = Number(a);
  const payload = Buffer.alloc(Number(b), 0x73);
  const holdMs = Number(c ?? 0);
  let sent = 0;
  let received = 0;
  const ports = [];
  const one = () =>
    new Promise((resolve, reject) => {
      const s = net.connect({ host, port }, () => {
        ports.push(s.localPort);
        // Hold the connection open with data in flight so a map read sees it.
        const finish = () => s.end(payload, () => (sent += payload.length));
        if (holdMs > 0) {
          s.write(payload.subarray(0, 1), () => setTimeout(() => s.end(payload.subarray(1)), holdMs));
          sent += payload.length;
        } else finish();
      });
      s.on('data', (d) => (received += d.length));
      s.on('close', (hadError) => (hadError ? reject(new Error('socket error')) : resolve()));
      s.on('error', reject);
    });
  (async () => {
    for (let i = 0; i < conns; i++) await one();
    out({ sent, received, ports });
  })().catch((e) => {
    out({ error: e.message });
    process.exit(1);
  });
} else if (mode === 'tcp-hold') {
  const conns = Number(a);
  const held = [];
  // 64 handshakes at a time: a burst of thousands would overflow the
  // listener's backlog and wait for SYN retransmits.
  const open = () =>
    new Promise((resolve, reject) => {
      const s = net.connect({ host, port }, () => s.write('h', resolve));
      s.on('error', reject);
      held.push(s);
    });
  (async () => {
    for (let i = 0; i < conns; i += 64) await Promise.all(Array.from({ length: Math.min(64, conns - i) }, open));
    out({ held: held.length });
  })().catch((e) => {
    out({ error: e.message });
    process.exit(1);
  });
  process.on('SIGTERM', () => process.exit(0));
} else if (mode === 'udp-server') {
  const reply = Buffer.alloc(Number(a), 0x52);
  const sock = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
  let datagrams = 0;
  sock.on('message', (_msg, rinfo) => {
    datagrams++;
    sock.send(reply, rinfo.port, rinfo.address);
  });
  sock.bind(port, host, () => out({ listening: true }));
  process.on('SIGTERM', () => {
    out({ datagrams });
    process.exit(0);
  });
} else if (mode === 'udp-client') {
  const count = Number(a);
  const payload = Buffer.alloc(Number(b), 0x53);
  const sock = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
  let received = 0;
  let replies = 0;
  let sent = 0;
  sock.on('message', (m) => {
    received += m.length;
    replies++;
    if (replies === count) {
      out({ sent, received, port: sock.address().port });
      sock.close();
    } else sendOne();
  });
  // One datagram in flight at a time: no loss on a quiet veth, exact counts.
  const sendOne = () => sock.send(payload, port, host, () => (sent += payload.length));
  sock.bind(0, () => sendOne());
  setTimeout(() => {
    out({ error: `only ${replies}/${count} replies`, sent, received });
    process.exit(1);
  }, 20000).unref();
} else if (mode === 'udp-spray') {
  // One datagram to each of <count> ports from one socket: <count> flows.
  const count = Number(a);
  const payload = Buffer.alloc(Number(b), 0x55);
  const sock = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
  sock.on('error', () => {}); // ICMP port unreachable is not ours to care about
  let sent = 0;
  const next = (i) => {
    if (i === count) {
      out({ sent, flows: count });
      sock.close();
      return;
    }
    sock.send(payload, port + i, host, () => {
      sent += payload.length;
      next(i + 1);
    });
  };
  sock.bind(0, () => next(0));
} else {
  process.stderr.write(`unknown mode ${mode}\n`);
  process.exit(2);
}
