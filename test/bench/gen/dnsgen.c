/* DNS lookup load for the benchmarks (test/bench/dns.ts): UDP queries to one
 * resolver with a fixed number of lookups in flight, like a busy stub
 * resolver. One epoll loop, no threads: what it measures is the resolver and
 * the collector, not the generator.
 *
 *   dnsgen <server-ip> <port> <seconds> <inflight> <sockets> <zone>
 *
 * Keeps <inflight> lookups outstanding over <sockets> connected UDP sockets
 * (slot i uses socket i % sockets). Each lookup is an A query for
 * q<n>.<zone> (n cycles through 1024 names) with a fresh id; an answer with
 * the slot's current id completes it and the slot sends the next one. A
 * lookup unanswered for 1 s is counted as timed out and replaced. After
 * <seconds> no new lookups start and the outstanding ones get 1 s to finish.
 * Prints one JSON line:
 *   {"sent":N,"answered":A,"timeouts":T,"late":L,"errors":E,"seconds":S,"rate":A/S,...}
 * where every query sent is either answered or timed out (sent = answered +
 * timeouts + unfinished), late counts answers to lookups already given up,
 * and errors counts answers with an rcode other than NOERROR. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_SLOTS 256
#define MAX_SOCKETS 256
#define NAMES 1024
#define TIMEOUT_S 1.0

#include "gen.h"

struct slot {
	uint16_t id;   /* id of the outstanding query */
	int busy;      /* a query is outstanding */
	double sent_at;
};

static struct slot slots[MAX_SLOTS];
static int socks[MAX_SOCKETS];
static int nslots, nsocks;
static uint16_t generation;
static unsigned long long sent, answered, timeouts, late, errors_, send_failed;
static unsigned long name_seq;
static const char *zone;

/* Builds an A query for q<n>.<zone> with `id`; returns its length. */
static int build_query(unsigned char *buf, uint16_t id, unsigned long n)
{
	unsigned char *p = buf;
	char label[16];
	const char *z = zone;
	int len;

	p[0] = (unsigned char)(id >> 8);
	p[1] = (unsigned char)id;
	p[2] = 0x01; /* RD */
	p[3] = 0x00;
	p[4] = 0;
	p[5] = 1; /* QDCOUNT */
	memset(p + 6, 0, 6);
	p += 12;
	len = snprintf(label, sizeof(label), "q%lu", n % NAMES);
	*p++ = (unsigned char)len;
	memcpy(p, label, (size_t)len);
	p += len;
	while (*z) {
		const char *dot = strchr(z, '.');
		size_t l = dot ? (size_t)(dot - z) : strlen(z);
		*p++ = (unsigned char)l;
		memcpy(p, z, l);
		p += l;
		z += l;
		if (*z == '.')
			z++;
	}
	*p++ = 0;
	*p++ = 0;
	*p++ = 1; /* QTYPE A */
	*p++ = 0;
	*p++ = 1; /* QCLASS IN */
	return (int)(p - buf);
}

/* The slot's id: the slot index in the low byte, a generation above it. */
static void send_query(int s, double now)
{
	unsigned char q[300];
	uint16_t id = (uint16_t)(((unsigned)(++generation) << 8) | (unsigned)s);
	int len = build_query(q, id, name_seq++);
	if (send(socks[s % nsocks], q, (size_t)len, 0) != len) {
		send_failed++;
		slots[s].busy = 0;
		return;
	}
	slots[s].id = id;
	slots[s].busy = 1;
	slots[s].sent_at = now;
	sent++;
}

int main(int argc, char **argv)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	struct epoll_event ev, events[64];
	unsigned char buf[4096];
	double seconds, t0, end, last_answer;
	int ep, draining = 0;

	if (argc < 7) {
		fprintf(stderr, "usage: dnsgen <server-ip> <port> <seconds> <inflight> <sockets> <zone>\n");
		return 2;
	}
	signal(SIGTERM, on_term);
	signal(SIGINT, on_term);
	if (inet_pton(AF_INET, argv[1], &a.sin_addr) != 1) {
		errno = EINVAL;
		die("address");
	}
	a.sin_port = htons((uint16_t)atoi(argv[2]));
	seconds = atof(argv[3]);
	nslots = atoi(argv[4]);
	nsocks = atoi(argv[5]);
	zone = argv[6];
	if (nslots < 1 || nslots > MAX_SLOTS || nsocks < 1 || nsocks > MAX_SOCKETS || strlen(zone) > 200) {
		errno = EINVAL;
		die("arguments");
	}
	if (nsocks > nslots)
		nsocks = nslots;
	ep = epoll_create1(0);
	if (ep < 0)
		die("epoll_create1");
	for (int i = 0; i < nsocks; i++) {
		socks[i] = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
		if (socks[i] < 0)
			die("socket");
		if (connect(socks[i], (struct sockaddr *)&a, sizeof(a)) < 0)
			die("connect");
		ev.events = EPOLLIN;
		ev.data.u32 = (uint32_t)i;
		epoll_ctl(ep, EPOLL_CTL_ADD, socks[i], &ev);
	}

	t0 = now_s();
	end = t0 + seconds;
	last_answer = t0;
	for (int s = 0; s < nslots; s++)
		send_query(s, t0);
	for (;;) {
		double now = now_s();
		int outstanding = 0;
		if (!draining && (now >= end || stop_requested))
			draining = 1;
		for (int s = 0; s < nslots; s++) {
			if (slots[s].busy && now - slots[s].sent_at > TIMEOUT_S) {
				slots[s].busy = 0;
				timeouts++;
			}
			if (!slots[s].busy && !draining)
				send_query(s, now);
			outstanding += slots[s].busy;
		}
		if (draining && (outstanding == 0 || now > end + TIMEOUT_S + 0.1))
			break;
		int n = epoll_wait(ep, events, 64, 10);
		now = now_s();
		for (int i = 0; i < n; i++) {
			int fd = socks[events[i].data.u32];
			for (;;) {
				ssize_t r = recv(fd, buf, sizeof(buf), 0);
				if (r < 0)
					break;
				if (r < 12)
					continue;
				uint16_t id = (uint16_t)((buf[0] << 8) | buf[1]);
				int s = id & 0xff;
				if (s >= nslots || !slots[s].busy || slots[s].id != id) {
					late++;
					continue;
				}
				slots[s].busy = 0;
				answered++;
				last_answer = now;
				if ((buf[3] & 0x0f) != 0)
					errors_++;
				if (!draining)
					send_query(s, now);
			}
		}
	}
	{
		double dur = last_answer - t0;
		unsigned long long unfinished = sent - answered - timeouts;
		printf("{\"sent\":%llu,\"answered\":%llu,\"timeouts\":%llu,\"unfinished\":%llu,\"late\":%llu,\"errors\":%llu,"
		       "\"sendFailed\":%llu,\"seconds\":%.4f,\"rate\":%.1f}\n",
		       sent, answered, timeouts, unfinished, late, errors_, send_failed, dur, dur > 0 ? answered / dur : 0.0);
		fflush(stdout);
	}
	return 0;
}
