/*
 * Scenario 5: the whole-process wall time of `locks run NAME true`
 * against `flock FILE true`, started alternately, one after the other.
 */

#include <sys/wait.h>

#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

#define CLI_WARMUP	5	/* runs of each before timing */

extern char	**environ;

/* Run argv to completion; its wall time in ns, or 0 if it failed. */
static uint64_t
cli_time(char *const argv[])
{
	posix_spawn_file_actions_t	 fa;
	uint64_t			 t0, t1;
	pid_t				 pid;
	int				 status, rc;

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null",
	    O_WRONLY, 0);
	t0 = now_ns();
	rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
	if (rc == 0 && waitpid(pid, &status, 0) != pid)
		rc = -1;
	t1 = now_ns();
	posix_spawn_file_actions_destroy(&fa);
	if (rc != 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "locks-bench: %s failed\n", argv[0]);
		return 0;
	}
	return t1 - t0;
}

/*
 * Time iters runs of each command, alternating; the medians go to r.
 * The locks CLI is bin, talking to the daemon on sock; the flock file
 * lives in dir.
 */
int
cli_run(const char *bin, const char *sock, const char *dir, int iters,
    struct cli_result *r)
{
	char		 file[4200];
	char		*locks_argv[] = { (char *)bin, "--socket", (char *)sock,
			    "run", "bench-cli", "true", NULL };
	char		*flock_argv[] = { "flock", file, "true", NULL };
	struct samples	 lk, fl;
	uint64_t	 a, b;
	int		 i, fd, rc = 0;

	snprintf(file, sizeof file, "%s/flock-file", dir);
	if ((fd = open(file, O_WRONLY | O_CREAT | O_CLOEXEC, 0644)) == -1)
		return -1;
	close(fd);
	memset(&lk, 0, sizeof lk);
	memset(&fl, 0, sizeof fl);
	for (i = 0; i < CLI_WARMUP + iters && rc == 0; i++) {
		a = cli_time(locks_argv);
		b = cli_time(flock_argv);
		if (a == 0 || b == 0)
			rc = -1;
		else if (i >= CLI_WARMUP && (samples_add(&lk, a) == -1 ||
		    samples_add(&fl, b) == -1))
			rc = -1;
	}
	r->locks_ms = samples_pct(&lk, 50) / 1e3;
	r->flock_ms = samples_pct(&fl, 50) / 1e3;
	samples_free(&lk);
	samples_free(&fl);
	return rc;
}
