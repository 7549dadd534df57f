/*
 * The servers measured: locksd, redis-server and the echo limit, each
 * started by the bench on a socket in its own private directory, killed
 * with the bench (PR_SET_PDEATHSIG) if it dies, and stopped when done.
 */

#include <sys/prctl.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

#define MAX_CHILDREN	8
#define START_SECS	10.0	/* how long a server may take to listen */
#define STOP_SECS	10.0	/* how long it may take to exit on SIGTERM */

/* Servers running now, for spawn_kill_all (which may run in a handler). */
static volatile pid_t	 children[MAX_CHILDREN];

static void
child_track(pid_t pid, pid_t old)
{
	int	 i;

	for (i = 0; i < MAX_CHILDREN; i++) {
		if (children[i] == old) {
			children[i] = pid;
			return;
		}
	}
}

/* Send SIGTERM to every server still running; async-signal-safe. */
void
spawn_kill_all(void)
{
	int	 i;

	for (i = 0; i < MAX_CHILDREN; i++) {
		if (children[i] > 0)
			kill(children[i], SIGTERM);
	}
}

/* In the child: die with the bench, log to a file, then exec argv. */
static void __attribute__((noreturn))
child_exec(char *const argv[], const char *log, pid_t parent)
{
	int		 fd;

	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != parent)
		_exit(127);
	if ((fd = open("/dev/null", O_RDONLY)) != -1) {
		dup2(fd, STDIN_FILENO);
		close(fd);
	}
	if ((fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644)) != -1) {
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		close(fd);
	}
	execvp(argv[0], argv);
	fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
	_exit(127);
}

/* Return 1 if something accepts connections on path. */
static int
socket_live(const char *path)
{
	struct sockaddr_un	 sun;
	int			 fd, live;

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return 0;
	live = connect(fd, (struct sockaddr *)&sun, sizeof sun) == 0;
	close(fd);
	return live;
}

/* Start argv as a server and wait until it listens on srv->path. */
static int
spawn_server(char *const argv[], const char *log, struct server *srv)
{
	pid_t		 parent = getpid(), pid;
	uint64_t	 deadline;
	int		 status;

	if ((pid = fork()) == -1)
		return -1;
	if (pid == 0)
		child_exec(argv, log, parent);
	srv->pid = pid;
	child_track(pid, 0);
	deadline = now_ns() + (uint64_t)(START_SECS * 1e9);
	while (!socket_live(srv->path)) {
		if (waitpid(pid, &status, WNOHANG) == pid || now_ns() >
		    deadline) {
			fprintf(stderr, "locks-bench: %s did not start; see "
			    "%s\n", argv[0], log);
			child_track(0, pid);
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			srv->pid = 0;
			return -1;
		}
		sleep_secs(0.005);
	}
	return 0;
}

/* Fill in the server's socket path and log path inside dir. */
static int
server_paths(struct server *srv, const char *dir, const char *sock,
    const char *logname, char *log, size_t logsize)
{
	memset(srv, 0, sizeof *srv);
	if (snprintf(srv->dir, sizeof srv->dir, "%s", dir) >=
	    (int)sizeof srv->dir ||
	    snprintf(srv->path, sizeof srv->path, "%s/%s", dir, sock) >=
	    (int)sizeof srv->path ||
	    snprintf(log, logsize, "%s/%s", dir, logname) >= (int)logsize) {
		fprintf(stderr, "locks-bench: path too long: %s\n", dir);
		return -1;
	}
	if (mkdir(dir, 0700) == -1 && errno != EEXIST)
		return -1;
	return 0;
}

/* Start locksd (the binary bin) on dir/locksd.sock, locks in dir/locks. */
int
spawn_locksd(const char *bin, const char *dir, struct server *srv)
{
	char	 log[4200], lockdir[4200];
	/* Every client of the benchmark is this one uid. */
	char	*argv[] = { (char *)bin, "--socket", srv->path, "--lock-dir",
		    lockdir, "--max-clients-per-uid", "10000", NULL };

	if (server_paths(srv, dir, "locksd.sock", "locksd.log", log,
	    sizeof log) == -1)
		return -1;
	snprintf(lockdir, sizeof lockdir, "%s/locks", dir);
	return spawn_server(argv, log, srv);
}

/* Start a private redis-server on dir/redis.sock: no TCP, no disk. */
int
spawn_redis(const char *bin, const char *dir, struct server *srv)
{
	char	 log[4200];
	char	*argv[] = { (char *)bin, "--port", "0", "--unixsocket",
		    srv->path, "--unixsocketperm", "700", "--save", "",
		    "--appendonly", "no", "--dir", srv->dir, "--maxclients",
		    "10100", "--daemonize", "no", NULL };

	if (server_paths(srv, dir, "redis.sock", "redis.log", log,
	    sizeof log) == -1)
		return -1;
	unlink(srv->path);
	return spawn_server(argv, log, srv);
}

/* Start the echo limit (this program, in echo mode) on dir/echo.sock. */
int
spawn_echo(const char *dir, struct server *srv)
{
	char	 log[4200];
	char	*argv[] = { "/proc/self/exe", "--echo-server", srv->path,
		    NULL };

	if (server_paths(srv, dir, "echo.sock", "echo.log", log,
	    sizeof log) == -1)
		return -1;
	unlink(srv->path);
	return spawn_server(argv, log, srv);
}

/* Stop a server with SIGTERM (SIGKILL if it hangs) and reap it. */
void
server_stop(struct server *srv)
{
	uint64_t	 deadline;
	int		 status;

	if (srv->pid <= 0)
		return;
	kill(srv->pid, SIGTERM);
	deadline = now_ns() + (uint64_t)(STOP_SECS * 1e9);
	while (waitpid(srv->pid, &status, WNOHANG) == 0) {
		if (now_ns() > deadline) {
			kill(srv->pid, SIGKILL);
			waitpid(srv->pid, &status, 0);
			break;
		}
		sleep_secs(0.005);
	}
	child_track(0, srv->pid);
	srv->pid = 0;
}

/* A process's resident set in KiB, from /proc/PID/status; -1 if unknown. */
long
proc_rss_kib(pid_t pid)
{
	char	 path[64], line[256];
	FILE	*f;
	long	 kib = -1;

	snprintf(path, sizeof path, "/proc/%ld/status", (long)pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	while (fgets(line, sizeof line, f) != NULL) {
		if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
			break;
	}
	fclose(f);
	return kib;
}

/* The CPUs to run on: cpu alone, or every online CPU if cpu is -1. */
static void
cpu_set_of(int cpu, cpu_set_t *set)
{
	long	 i, n = sysconf(_SC_NPROCESSORS_ONLN);

	CPU_ZERO(set);
	for (i = 0; i < n && i < CPU_SETSIZE; i++) {
		if (cpu < 0 || i == cpu)
			CPU_SET(i, set);
	}
}

/*
 * Pin every thread of pid (0: the calling thread, and the threads it
 * creates from now on) to cpu, or free it to run anywhere if cpu is -1.
 */
int
proc_pin(pid_t pid, int cpu)
{
	char		 path[64];
	cpu_set_t	 set;
	DIR		*dir;
	struct dirent	*de;
	int		 rc = 0;

	cpu_set_of(cpu, &set);
	if (pid < 0)
		return -1;
	if (pid == 0)
		return sched_setaffinity(0, sizeof set, &set);
	snprintf(path, sizeof path, "/proc/%ld/task", (long)pid);
	if ((dir = opendir(path)) == NULL)
		return -1;
	while ((de = readdir(dir)) != NULL) {
		if (de->d_name[0] != '.' && sched_setaffinity((pid_t)strtol(
		    de->d_name, NULL, 10), sizeof set, &set) == -1)
			rc = -1;
	}
	closedir(dir);
	return rc;
}

/* One thread's time on a CPU in ns, from its schedstat; -1 if unknown. */
static int64_t
task_cpu_ns(pid_t pid, const char *tid)
{
	char		 path[320];
	long long	 ns;
	FILE		*f;
	int		 n;

	snprintf(path, sizeof path, "/proc/%ld/task/%s/schedstat", (long)pid,
	    tid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	n = fscanf(f, "%lld", &ns);
	fclose(f);
	return n == 1 ? ns : -1;
}

/* A process's CPU time in ns, all its threads; -1 if unknown. */
int64_t
proc_cpu_ns(pid_t pid)
{
	char		 path[64];
	DIR		*dir;
	struct dirent	*de;
	int64_t		 total = 0, ns;

	snprintf(path, sizeof path, "/proc/%ld/task", (long)pid);
	if (pid <= 0 || (dir = opendir(path)) == NULL)
		return -1;
	while ((de = readdir(dir)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if ((ns = task_cpu_ns(pid, de->d_name)) >= 0)
			total += ns;
	}
	closedir(dir);
	return total;
}
