/* TCP load for the benchmarks (test/bench). One epoll loop per process, no
 * threads: a Node client tops out at a few thousand connections a second on
 * our 2-core VMs, which would measure Node rather than the collector.
 *
 *   tcpgen server <ip> <port> <nports> [<reply-bytes>]
 *       Listens on port..port+nports-1; reads every connection to EOF, then
 *       writes <reply-bytes> (default 0) and closes it (so a held connection
 *       stays open as long as its client). Prints {"listening":true} once
 *       listening, {"accepted":N,"closed":M,"bytesRead":..,"bytesWritten":..}
 *       on SIGUSR1 (cumulative) and on SIGTERM (then exits).
 *   tcpgen churn <ip> <port> <nports> <seconds> <rate> <concurrency> <bytes> [<expect-reply>]
 *       Short connections: connect, send <bytes> (any size), close; as fast
 *       as it can (rate 0) or paced to <rate> new connections a second, with
 *       at most <concurrency> connections in flight. With <expect-reply> 1 it
 *       half-closes after sending and reads the server's answer to EOF before
 *       closing. Prints one JSON line when done, with the bytes it sent and
 *       received.
 *   tcpgen hold <ip> <port> <count> <bytes> <concurrency>
 *       Opens <count> connections, sends <bytes> on each and keeps them
 *       open; prints {"open":N,...} when all are up, exits on SIGTERM.
 *
 * Every count printed is the ground truth the benchmark compares the
 * collector's numbers with. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_EVENTS 256

#include "gen.h"

/* Hold mode needs one descriptor per connection. */
static void raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static void handle_signals(void)
{
	struct sigaction sa = { 0 };
	sa.sa_handler = on_term;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

static struct sockaddr_in addr_of(const char *ip, int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	if (inet_pton(AF_INET, ip, &a.sin_addr) != 1) {
		errno = EINVAL;
		die("address");
	}
	return a;
}

/* Listening sockets are told apart from connections by a tag in the epoll data. */
#define LISTEN_TAG (1ULL << 32)

/* Writes all of buf to a blocking-for-this-call socket; 0 or an errno. */
static int write_all(int fd, const char *buf, long len, unsigned long long *counted)
{
	int flags = fcntl(fd, F_GETFL);
	fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
	while (len > 0) {
		ssize_t w = write(fd, buf, (size_t)(len < 65536 ? len : 65536));
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return errno;
		}
		*counted += (unsigned long long)w;
		len -= w;
	}
	return 0;
}

static int run_server(const char *ip, int port, int nports, long reply_bytes)
{
	int ep = epoll_create1(0);
	struct epoll_event ev, events[MAX_EVENTS];
	unsigned long long accepted = 0, closed = 0, bytes_read = 0, bytes_written = 0, reply_failed = 0;
	char buf[65536];

	if (ep < 0)
		die("epoll_create1");
	memset(buf, 's', sizeof(buf));
	for (int i = 0; i < nports; i++) {
		struct sockaddr_in a = addr_of(ip, port + i);
		int one = 1;
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
		if (fd < 0)
			die("socket");
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
			die("bind");
		if (listen(fd, 8192) < 0)
			die("listen");
		ev.events = EPOLLIN;
		ev.data.u64 = LISTEN_TAG | (unsigned)fd;
		epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
	}
	printf("{\"listening\":true,\"pid\":%d}\n", getpid());
	fflush(stdout);

#define SERVER_REPORT                                                                                                       \
	printf("{\"accepted\":%llu,\"closed\":%llu,\"bytesRead\":%llu,\"bytesWritten\":%llu,\"replyFailed\":%llu}\n", accepted, \
	       closed, bytes_read, bytes_written, reply_failed)
	while (!stop_requested) {
		int n = epoll_wait(ep, events, MAX_EVENTS, 200);
		if (report_requested) {
			report_requested = 0;
			SERVER_REPORT;
			fflush(stdout);
		}
		for (int i = 0; i < n; i++) {
			uint64_t d = events[i].data.u64;
			int fd = (int)(d & 0xffffffffu);
			if (d & LISTEN_TAG) {
				for (;;) {
					int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK);
					if (c < 0)
						break; /* EAGAIN, or out of descriptors: the backlog keeps them */
					accepted++;
					ev.events = EPOLLIN;
					ev.data.u64 = (unsigned)c;
					epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
				}
				continue;
			}
			for (;;) {
				ssize_t r = read(fd, buf, sizeof(buf));
				if (r > 0) {
					bytes_read += (unsigned long long)r;
					continue;
				}
				if (r < 0 && errno == EAGAIN)
					break;
				/* EOF or error: the client is done sending; answer if asked to, then close */
				if (r == 0 && reply_bytes > 0 && write_all(fd, buf, reply_bytes, &bytes_written) != 0)
					reply_failed++;
				close(fd);
				closed++;
				break;
			}
		}
	}
	SERVER_REPORT;
	fflush(stdout);
	return 0;
}

/* Starts a non-blocking connect; returns the fd (registered for EPOLLOUT) or -errno. */
static int start_connect(int ep, const struct sockaddr_in *a)
{
	struct epoll_event ev;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (const struct sockaddr *)a, sizeof(*a)) < 0 && errno != EINPROGRESS) {
		int e = errno;
		close(fd);
		return -e;
	}
	ev.events = EPOLLOUT;
	ev.data.u64 = (unsigned)fd;
	epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
	return fd;
}

/* 0 when the connect finished and the payload went out, else an errno (hold mode: small payloads). */
static int finish_connect(int fd, const char *payload, int bytes)
{
	int err = 0;
	socklen_t len = sizeof(err);
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		return errno;
	if (err)
		return err;
	if (bytes > 0 && write(fd, payload, (size_t)bytes) != bytes)
		return errno ? errno : EIO;
	return 0;
}

/* A churn connection's progress, indexed by fd. */
enum { C_FREE = 0, C_CONNECTING, C_SENDING, C_READING };
struct conn {
	unsigned char phase;
	long left; /* request bytes still to send */
};

static int run_churn(const char *ip, int port, int nports, double seconds, double rate, int concurrency, long bytes, int expect_reply)
{
	int ep = epoll_create1(0);
	struct epoll_event ev, events[MAX_EVENTS];
	struct sockaddr_in *addrs = calloc((size_t)nports, sizeof(*addrs));
	static char payload[65536], sink[65536];
	struct rlimit rl;
	struct conn *conns;
	size_t nconns;
	unsigned long long started = 0, made = 0, failed = 0, bytes_sent = 0, bytes_received = 0;
	int inflight = 0, first_error = 0;
	double t0, end, last_done;

	getrlimit(RLIMIT_NOFILE, &rl);
	nconns = rl.rlim_cur > 1048576 ? 1048576 : (size_t)rl.rlim_cur;
	conns = calloc(nconns, sizeof(*conns));
	if (ep < 0 || !addrs || !conns)
		die("setup");
	memset(payload, 'c', sizeof(payload));
	for (int i = 0; i < nports; i++)
		addrs[i] = addr_of(ip, port + i);
	t0 = now_s();
	end = t0 + seconds;
	last_done = t0;
	for (;;) {
		double now = now_s();
		int timeout_ms = 1;
		if (now < end && !stop_requested) {
			/* Paced: start what the schedule allows up to now. */
			unsigned long long due = rate > 0 ? (unsigned long long)((now - t0) * rate) + 1 : ~0ULL;
			while (inflight < concurrency && started < due) {
				int fd = start_connect(ep, &addrs[started % (unsigned long long)nports]);
				started++;
				if (fd < 0 || (size_t)fd >= nconns) {
					if (fd >= 0)
						close(fd);
					failed++;
					if (!first_error)
						first_error = fd < 0 ? -fd : EMFILE;
					continue;
				}
				conns[fd].phase = C_CONNECTING;
				conns[fd].left = bytes;
				inflight++;
			}
		} else if (inflight == 0 || now > end + 10) {
			break;
		} else {
			timeout_ms = 50;
		}
		int n = epoll_wait(ep, events, MAX_EVENTS, timeout_ms);
		for (int i = 0; i < n; i++) {
			int fd = (int)events[i].data.u64;
			struct conn *c = &conns[fd];
			int e = 0, done = 0;
			if (c->phase == C_CONNECTING) {
				socklen_t len = sizeof(e);
				if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0)
					e = errno;
				if (!e)
					c->phase = C_SENDING;
			}
			if (!e && c->phase == C_SENDING) {
				while (c->left > 0) {
					ssize_t w = write(fd, payload, (size_t)(c->left < (long)sizeof(payload) ? c->left : (long)sizeof(payload)));
					if (w < 0) {
						if (errno != EAGAIN)
							e = errno;
						break;
					}
					bytes_sent += (unsigned long long)w;
					c->left -= w;
				}
				if (!e && c->left == 0) {
					if (!expect_reply) {
						done = 1;
					} else {
						/* Half-close: the server answers at EOF, then closes. */
						shutdown(fd, SHUT_WR);
						c->phase = C_READING;
						ev.events = EPOLLIN;
						ev.data.u64 = (unsigned)fd;
						epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
					}
				}
			} else if (!e && c->phase == C_READING) {
				for (;;) {
					ssize_t r = read(fd, sink, sizeof(sink));
					if (r > 0) {
						bytes_received += (unsigned long long)r;
						continue;
					}
					if (r == 0)
						done = 1;
					else if (errno != EAGAIN)
						e = errno;
					break;
				}
			}
			if (e || done) {
				close(fd);
				c->phase = C_FREE;
				inflight--;
				if (e) {
					failed++;
					if (!first_error)
						first_error = e;
				} else {
					made++;
				}
			}
		}
		if (n > 0)
			last_done = now_s();
	}
	printf("{\"made\":%llu,\"failed\":%llu,\"inflightLeft\":%d,\"seconds\":%.4f,\"rate\":%.1f,\"bytesSent\":%llu,\"bytesReceived\":%llu,"
	       "\"firstError\":\"%s\"}\n",
	       made, failed, inflight, last_done - t0, made / (last_done - t0 > 0 ? last_done - t0 : 1), bytes_sent, bytes_received,
	       first_error ? strerror(first_error) : "");
	fflush(stdout);
	return 0;
}

static int run_hold(const char *ip, int port, long count, int bytes, int concurrency)
{
	int ep = epoll_create1(0);
	struct epoll_event events[MAX_EVENTS];
	struct sockaddr_in a = addr_of(ip, port);
	char *payload = malloc((size_t)bytes + 1);
	long started = 0, open_ = 0, failed = 0;
	int inflight = 0, first_error = 0;
	double t0 = now_s();

	if (ep < 0 || !payload)
		die("setup");
	memset(payload, 'h', (size_t)bytes + 1);
	while (open_ + failed < count && !stop_requested) {
		while (inflight < concurrency && started < count) {
			int fd = start_connect(ep, &a);
			started++;
			if (fd < 0) {
				failed++;
				if (!first_error)
					first_error = -fd;
				continue;
			}
			inflight++;
		}
		int n = epoll_wait(ep, events, MAX_EVENTS, 100);
		for (int i = 0; i < n; i++) {
			int fd = (int)events[i].data.u64;
			int e = finish_connect(fd, payload, bytes);
			epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
			inflight--;
			if (e) {
				close(fd);
				failed++;
				if (!first_error)
					first_error = e;
			} else {
				open_++; /* stays open until we exit */
			}
		}
	}
	printf("{\"open\":%ld,\"failed\":%ld,\"seconds\":%.3f,\"firstError\":\"%s\"}\n", open_, failed, now_s() - t0,
	       first_error ? strerror(first_error) : "");
	fflush(stdout);
	while (!stop_requested)
		pause();
	return 0;
}

int main(int argc, char **argv)
{
	raise_nofile();
	handle_signals();
	if (argc >= 5 && strcmp(argv[1], "server") == 0)
		return run_server(argv[2], atoi(argv[3]), atoi(argv[4]), argc >= 6 ? atol(argv[5]) : 0);
	if (argc >= 9 && strcmp(argv[1], "churn") == 0)
		return run_churn(argv[2], atoi(argv[3]), atoi(argv[4]), atof(argv[5]), atof(argv[6]), atoi(argv[7]), atol(argv[8]),
				 argc >= 10 ? atoi(argv[9]) : 0);
	if (argc >= 7 && strcmp(argv[1], "hold") == 0)
		return run_hold(argv[2], atoi(argv[3]), atol(argv[4]), atoi(argv[5]), atoi(argv[6]));
	fprintf(stderr, "usage: tcpgen server <ip> <port> <nports> [<reply-bytes>]\n"
			"       tcpgen churn <ip> <port> <nports> <seconds> <rate> <concurrency> <bytes> [<expect-reply>]\n"
			"       tcpgen hold <ip> <port> <count> <bytes> <concurrency>\n");
	return 2;
}
