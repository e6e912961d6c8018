#!/usr/bin/env node
// A tiny authoritative DNS server for end-to-end tests, run inside a network
// namespace with `ip netns exec`, so tests never query a resolver they did not
// start. Prints one JSON line when it listens, and its counters on SIGTERM.
//
//   dns-server <host> <port> <zone JSON>   answers over UDP and TCP
//   dns-silent <host> <port>               reads UDP queries and never answers
//
// Zone JSON: { "<name>": { "A": ["ip", ...], "AAAA": [...], "CNAME": "<name>", "ttl": 300 } }.
// A name that is not in the zone gets NXDOMAIN (rcode 3); a CNAME is followed
// inside the zone, as a real server does, so an answer holds the whole chain.
'use strict';
const dgram = require('node:dgram');
const net = require('node:net');

const [mode, host, portArg, zoneArg] = process.argv.slice(2);
const port = Number(portArg);
process.title = `dke-${mode}`;
const counters = { udp: 0, tcp: 0 };

function out(obj) {
  process.stdout.write(`${JSON.stringify({ pid: process.pid, ...obj })}\n`);
}

const TYPE = { A: 1, CNAME: 5, AAAA: 28 };

function readName(buf, off) {
  const labels = [];
  for (;;) {
    const len = buf[off];
    if (len === 0) return { name: labels.join('.').toLowerCase(), end: off + 1 };
    labels.push(buf.toString('latin1', off + 1, off + 1 + len));
    off += 1 + len;
  }
}

function encodeName(name) {
  const parts = name.split('.').filter(Boolean);
  return Buffer.concat([...parts.map((p) => Buffer.concat([Buffer.from([p.length]), Buffer.from(p, 'latin1')])), Buffer.from([0])]);
}

function ipv6Bytes(ip) {
  const [head, tail] = ip.split('::');
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  const b = Buffer.alloc(16);
  groups.forEach((g, i) => b.writeUInt16BE(parseInt(g, 16), i * 2));
  return b;
}

function rr(name, type, ttl, rdata) {
  const fixed = Buffer.alloc(10);
  fixed.writeUInt16BE(type, 0);
  fixed.writeUInt16BE(1, 2);
  fixed.writeUInt32BE(ttl, 4);
  fixed.writeUInt16BE(rdata.length, 8);
  return Buffer.concat([encodeName(name), fixed, rdata]);
}

function answer(query, zone) {
  const id = query.readUInt16BE(0);
  const q = readName(query, 12);
  const qtype = query.readUInt16BE(q.end);
  const question = query.subarray(12, q.end + 4);
  const answers = [];
  let name = q.name;
  let rcode = 3;
  for (let hops = 0; hops < 8 && zone[name]; hops++) {
    const e = zone[name];
    const ttl = e.ttl ?? 300;
    rcode = 0;
    if (e.CNAME) {
      answers.push(rr(name, TYPE.CNAME, ttl, encodeName(e.CNAME)));
      name = e.CNAME.toLowerCase();
      continue;
    }
    if (qtype === TYPE.A) for (const ip of e.A ?? []) answers.push(rr(name, TYPE.A, ttl, Buffer.from(ip.split('.').map(Number))));
    if (qtype === TYPE.AAAA) for (const ip of e.AAAA ?? []) answers.push(rr(name, TYPE.AAAA, ttl, ipv6Bytes(ip)));
    break;
  }
  const header = Buffer.alloc(12);
  header.writeUInt16BE(id, 0);
  // QR, opcode 0, AA, RD copied, RA; rcode.
  header.writeUInt16BE(0x8400 | (query.readUInt16BE(2) & 0x0100) | 0x0080 | rcode, 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(answers.length, 6);
  return Buffer.concat([header, question, ...answers]);
}

if (mode === 'dns-server') {
  const zone = JSON.parse(zoneArg);
  const family = net.isIPv6(host) ? 'udp6' : 'udp4';
  const udp = dgram.createSocket(family);
  udp.on('message', (msg, rinfo) => {
    counters.udp++;
    udp.send(answer(msg, zone), rinfo.port, rinfo.address);
  });
  const tcp = net.createServer((s) => {
    let buf = Buffer.alloc(0);
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const msg = buf.subarray(2, 2 + buf.readUInt16BE(0));
        buf = buf.subarray(2 + msg.length);
        counters.tcp++;
        const a = answer(msg, zone);
        const len = Buffer.alloc(2);
        len.writeUInt16BE(a.length);
        s.write(Buffer.concat([len, a]));
      }
    });
    s.on('error', () => {});
  });
  let ready = 0;
  const up = () => ++ready === 2 && out({ listening: true });
  udp.bind(port, host, up);
  tcp.listen(port, host, up);
} else if (mode === 'dns-silent') {
  const udp = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
  udp.on('message', () => counters.udp++);
  udp.bind(port, host, () => out({ listening: true }));
} else {
  out({ error: `unknown mode ${mode}` });
  process.exit(2);
}

process.on('SIGTERM', () => {
  out(counters);
  process.exit(0);
});
