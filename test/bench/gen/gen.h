/* What every load generator of the benchmarks needs the same way: a stop
 * flag set by SIGTERM, a report flag set by SIGUSR1, a monotonic clock in
 * seconds, and a fatal error printed as the one JSON line the runner reads. */
#ifndef DKE_BENCH_GEN_H
#define DKE_BENCH_GEN_H

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static volatile sig_atomic_t stop_requested;
static volatile sig_atomic_t report_requested;

static void __attribute__((unused)) on_term(int sig) { (void)sig; stop_requested = 1; }
static void __attribute__((unused)) on_usr1(int sig) { (void)sig; report_requested = 1; }

static double __attribute__((unused)) now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
	printf("{\"error\":\"%s: %s\"}\n", what, strerror(errno));
	fflush(stdout);
	exit(1);
}

#endif
