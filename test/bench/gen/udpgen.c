/* UDP load for the benchmarks (test/bench/udp.ts): many short-lived
 * one-datagram sockets to one server, the pattern that fills a per-socket
 * flow table (DNS stub resolvers, statsd clients, syslog senders).
 *
 *   udpgen server <ip> <port>
 *       One UDP socket with a large receive buffer; reads and counts every
 *       datagram. Prints {"listening":true} once bound, and
 *       {"datagrams":N,"bytes":B} on SIGUSR1 (cumulative) and on SIGTERM
 *       (then exits).
 *   udpgen burst <ip> <port> <sockets> <seconds> <bytes>
 *       <sockets> times: a new UDP socket sends one datagram of <bytes> to
 *       the server and is closed; paced evenly over <seconds>. Even-numbered
 *       sockets connect() and send(), odd-numbered ones sendto() without
 *       connecting (both ways are common and take different kernel paths).
 *       Prints {"sockets":N,"sent":N,"bytes":B,"failed":F,"seconds":S}.
 *
 * Every count printed is the ground truth the benchmark compares the
 * collector's numbers with. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "gen.h"

static struct sockaddr_in addr_of(const char *ip, int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	if (inet_pton(AF_INET, ip, &a.sin_addr) != 1) {
		errno = EINVAL;
		die("address");
	}
	return a;
}

static int run_server(const char *ip, int port)
{
	struct sockaddr_in a = addr_of(ip, port);
	struct sigaction sa = { 0 };
	struct timeval tv = { .tv_sec = 0, .tv_usec = 200000 };
	int size = 64 << 20;
	unsigned long long datagrams = 0, bytes = 0;
	static char buf[65536];
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	if (fd < 0)
		die("socket");
	/* Root may go past rmem_max: a burst must not overflow the socket. */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) < 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		die("bind");
	sa.sa_handler = on_term;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	printf("{\"listening\":true,\"pid\":%d}\n", getpid());
	fflush(stdout);
	while (!stop_requested) {
		ssize_t r = recv(fd, buf, sizeof(buf), 0);
		if (r >= 0) {
			datagrams++;
			bytes += (unsigned long long)r;
		}
		if (report_requested) {
			report_requested = 0;
			printf("{\"datagrams\":%llu,\"bytes\":%llu}\n", datagrams, bytes);
			fflush(stdout);
		}
	}
	/* What is still queued was sent and delivered: count it too. */
	for (;;) {
		ssize_t r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (r < 0)
			break;
		datagrams++;
		bytes += (unsigned long long)r;
	}
	printf("{\"datagrams\":%llu,\"bytes\":%llu}\n", datagrams, bytes);
	fflush(stdout);
	return 0;
}

static int run_burst(const char *ip, int port, long count, double seconds, int bytes)
{
	struct sockaddr_in a = addr_of(ip, port);
	static char payload[65536];
	unsigned long long sent = 0, sent_bytes = 0, failed = 0;
	int first_error = 0;
	double t0 = now_s();

	if (bytes < 0 || bytes > (int)sizeof(payload)) {
		errno = EINVAL;
		die("bytes");
	}
	memset(payload, 'u', sizeof(payload));
	for (long i = 0; i < count && !stop_requested; i++) {
		/* Paced: socket i goes out at t0 + i * seconds / count. */
		double due = t0 + (double)i * seconds / (double)count;
		double now = now_s();
		if (due > now + 0.0005) {
			struct timespec ts = { .tv_sec = 0, .tv_nsec = (long)((due - now) * 1e9) };
			nanosleep(&ts, NULL);
		}
		int fd = socket(AF_INET, SOCK_DGRAM, 0);
		ssize_t w;
		if (fd < 0) {
			failed++;
			if (!first_error)
				first_error = errno;
			continue;
		}
		if (i % 2 == 0) {
			w = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 ? send(fd, payload, (size_t)bytes, 0) : -1;
		} else {
			w = sendto(fd, payload, (size_t)bytes, 0, (struct sockaddr *)&a, sizeof(a));
		}
		if (w == bytes) {
			sent++;
			sent_bytes += (unsigned long long)w;
		} else {
			failed++;
			if (!first_error)
				first_error = w < 0 ? errno : EIO;
		}
		close(fd);
	}
	printf("{\"sockets\":%ld,\"sent\":%llu,\"bytes\":%llu,\"failed\":%llu,\"seconds\":%.4f,\"firstError\":\"%s\"}\n", count, sent,
	       sent_bytes, failed, now_s() - t0, first_error ? strerror(first_error) : "");
	fflush(stdout);
	return 0;
}

int main(int argc, char **argv)
{
	signal(SIGTERM, on_term);
	signal(SIGINT, on_term);
	if (argc >= 4 && strcmp(argv[1], "server") == 0)
		return run_server(argv[2], atoi(argv[3]));
	if (argc >= 7 && strcmp(argv[1], "burst") == 0)
		return run_burst(argv[2], atoi(argv[3]), atol(argv[4]), atof(argv[5]), atoi(argv[6]));
	fprintf(stderr, "usage: udpgen server <ip> <port>\n"
			"       udpgen burst <ip> <port> <sockets> <seconds> <bytes>\n");
	return 2;
}
