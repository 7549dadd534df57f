/*
 * A locksd under the descriptor store's double, for tests in other
 * languages: `fdstore_run DIR` starts locksd with its socket
 * (DIR/locksd.sock), lock dir and log in DIR and NOTIFY_SOCKET naming
 * the double, and prints "ready".  Each line "restart" on stdin restarts
 * it through the store, as `systemctl restart` would, and is answered
 * "restarted" once the next instance has restored (or "failed: why").
 * At end of input the daemon is stopped and the program exits.
 */
#include <sys/types.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "fdstore.h"
#include "harness.h"

static struct fdstore	 store;
static struct h_daemon	 daemon_;

/* How many times the daemon's log says it restored a state. */
static int
restored_count(void)
{
	static char	 buf[1 << 20];
	char		*p;
	int		 n = 0;

	if (h_slurp(daemon_.log_path, buf, sizeof buf) < 0)
		return 0;
	for (p = buf; (p = strstr(p, "locksd: restored ")) != NULL; p++)
		n++;
	return n;
}

/* Restart through the store and wait for the restore; 0 or -1. */
static int
restart(int restarts)
{
	double	 deadline = h_now() + h_slow(2 * H_START_SECS);

	if (fdstore_restart(&store, &daemon_) == -1) {
		printf("failed: %s\n", store.error);
		return -1;
	}
	while (restored_count() < restarts) {
		fdstore_drain(&store);
		if (h_now() > deadline) {
			printf("failed: no restore within the time\n");
			return -1;
		}
		h_sleep(0.01);
	}
	printf("restarted\n");
	return 0;
}

/* Serve stdin's commands, draining the store meanwhile. */
static void
serve(void)
{
	struct pollfd	 pfd[2] = { { STDIN_FILENO, POLLIN, 0 },
			    { -1, POLLIN, 0 } };
	char		 line[64];
	int		 restarts = 0;

	pfd[1].fd = store.sock;
	for (;;) {
		fflush(stdout);
		if (poll(pfd, 2, -1) == -1 && errno != EINTR)
			return;
		fdstore_drain(&store);
		if ((pfd[0].revents & (POLLIN | POLLHUP)) == 0)
			continue;
		if (fgets(line, sizeof line, stdin) == NULL)
			return;
		if (strcmp(line, "restart\n") == 0)
			restart(++restarts);
		else
			printf("failed: unknown command\n");
	}
}

int
main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: fdstore_run DIR\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	if (fdstore_open(&store, argv[1]) == -1) {
		fprintf(stderr, "fdstore_run: notify socket in %s: %s\n",
		    argv[1], strerror(errno));
		return 1;
	}
	if (h_daemon_start_in(&daemon_, argv[1]) == -1) {
		fprintf(stderr, "fdstore_run: %s\n", h_error());
		return 1;
	}
	printf("ready\n");
	serve();
	h_daemon_stop(&daemon_);
	fdstore_close(&store);
	return 0;
}
