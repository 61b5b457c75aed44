/*
 * Minimal pod sandbox ("pause") process for sandrun's local cluster.
 *
 * It holds the pod's namespaces open and does nothing else: it blocks until a
 * signal arrives, reaps any zombie children it inherits as PID 1 of a shared
 * PID namespace, and exits 0 on SIGINT/SIGTERM so pod teardown is quick.
 * Built with `gcc -static` so the image needs no libc.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void reap_children(void)
{
	/* Collect every exited child without blocking; ECHILD ends the loop. */
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
}

int main(int argc, char **argv)
{
	sigset_t set;
	int sig;

	if (argc > 1 && strcmp(argv[1], "-v") == 0) {
		puts("sandrun-pause");
		return 0;
	}
	if (getpid() != 1)
		fprintf(stderr, "pause: warning: not running as PID 1\n");

	/*
	 * Block the signals we care about and take them synchronously with
	 * sigwait: no async handlers, no races between a signal and pause().
	 */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGCHLD);
	if (sigprocmask(SIG_BLOCK, &set, NULL) != 0) {
		perror("pause: sigprocmask");
		return 1;
	}

	for (;;) {
		if (sigwait(&set, &sig) != 0)
			continue;
		switch (sig) {
		case SIGCHLD:
			reap_children();
			break;
		case SIGINT:
		case SIGTERM:
			reap_children();
			return 0;
		}
	}
}
