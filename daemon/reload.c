/*
 * Handing the daemon over without dropping a lock, two ways.
 *
 * Reload (SIGHUP): the state goes into a memfd (state.c), every
 * descriptor it names loses FD_CLOEXEC, and the daemon's own binary is
 * executed in place, with the memfd's number in $LOCKSD_STATE_FD: same
 * pid, same open file descriptions, so every flock stays held and
 * nothing is taken anew.  The binary is first run with --version, so a
 * binary that cannot start leaves the old image running; an exec that
 * fails does too.
 *
 * Restart (SIGTERM under systemd): every descriptor goes to systemd's
 * descriptor store (FDSTORE=1), one per message, named "fd<N>" after
 * its number here, and the memfd last, named "state".  The next
 * instance gets them back as LISTEN_FDS/LISTEN_FDNAMES and finds each by
 * its name.  Then this instance points every handed-over number at
 * /dev/null before it tears down, so that its teardown releases nothing
 * the next one holds.
 *
 * At start (reload_startup): the state of either way is read; what it
 * does not name is closed.  A state that cannot be read at all is
 * salvaged: inherited listening sockets are served, all else is closed,
 * which releases it as a crash would.
 */

#include <sys/stat.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "daemon.h"

#define PROBE_SECS	5	/* for the new binary's --version */
#define FDNAME_PREFIX	"fd"

extern char **environ;

static char	 reload_exe[PATH_MAX];	/* the binary's path at start */
static char	**reload_argv;
static char	**taken_names;		/* from the store, to remove */
static size_t	  ntaken;

/* Remember how this daemon was started, to start it again so. */
void
reload_init(char **argv)
{
	ssize_t	 n;

	reload_argv = argv;
	n = readlink("/proc/self/exe", reload_exe, sizeof reload_exe - 1);
	if (n <= 0 || (size_t)n >= sizeof reload_exe - 1)
		snprintf(reload_exe, sizeof reload_exe, "/proc/self/exe");
	else
		reload_exe[n] = '\0';
}

/* Set or clear FD_CLOEXEC on a descriptor of the state. */
static void
set_cloexec(int *fd, void *arg)
{
	int	 on = *(int *)arg, flags;

	if ((flags = fcntl(*fd, F_GETFD)) == -1)
		return;
	fcntl(*fd, F_SETFD, on ? flags | FD_CLOEXEC : flags & ~FD_CLOEXEC);
}

/*
 * Whether the binary at reload_exe starts at all: --version must exit 0
 * within PROBE_SECS.  Its output goes to /dev/null.
 */
static int
reload_probe(void)
{
	posix_spawn_file_actions_t	 fa;
	char				*args[] = { reload_exe, "--version",
					    NULL };
	pid_t				 pid;
	int				 status, i, rc;

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	rc = posix_spawn(&pid, reload_exe, &fa, NULL, args, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (rc != 0) {
		log_warnx("reload: cannot run %s: %s", reload_exe,
		    strerror(rc));
		return -1;
	}
	for (i = 0; i < PROBE_SECS * 100; i++) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			break;
		nanosleep(&(struct timespec){ 0, 10000000 }, NULL);
	}
	if (i == PROBE_SECS * 100) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		log_warnx("reload: %s --version did not end within %d s",
		    reload_exe, PROBE_SECS);
		return -1;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		log_warnx("reload: %s --version failed (status %d)",
		    reload_exe, status);
		return -1;
	}
	return 0;
}

/*
 * SIGHUP: execute the binary again in place, handing it the state.
 * Returns only if that failed, with the daemon as it was: -1.
 */
int
reload_exec(struct server *srv)
{
	struct snap	 snap;
	char		 num[16];
	int		 fd, off = 0, on = 1;

	if (reload_probe() == -1)
		return -1;
	if (server_snapshot(srv, &snap) == -1) {
		log_warnx("reload: out of memory saving the state");
		state_free(&snap);
		return -1;
	}
	if ((fd = state_memfd(&snap)) < 0) {
		log_warnx("reload: cannot write the state: %s",
		    strerror(-fd));
		state_free(&snap);
		return -1;
	}
	log_info("reload: executing %s in place", reload_exe);
	state_each_fd(&snap, set_cloexec, &off);
	set_cloexec(&fd, &off);
	snprintf(num, sizeof num, "%d", fd);
	setenv(STATE_ENV, num, 1);
	execv(reload_exe, reload_argv);
	log_warn("reload: exec %s", reload_exe);
	unsetenv(STATE_ENV);
	state_each_fd(&snap, set_cloexec, &on);
	close(fd);
	state_free(&snap);
	return -1;
}

/*
 * Whether SIGTERM hands over to systemd's descriptor store: under
 * systemd (NOTIFY_SOCKET), unless $FDSTORE (systemd 254 on) says the
 * unit has none.
 */
int
reload_fdstore_wanted(void)
{
	const char	*fdstore = getenv("FDSTORE");

	if (getenv("NOTIFY_SOCKET") == NULL)
		return 0;
	return fdstore == NULL || strtol(fdstore, NULL, 10) > 0;
}

/* What an upload to the store did: how many went, the first error. */
struct upload {
	size_t		 sent;
	int		 error;
};

/* Store one descriptor under name. */
static void
upload_named(struct upload *up, int fd, const char *name)
{
	char	 msg[64];
	int	 rc;

	if (up->error != 0)
		return;
	snprintf(msg, sizeof msg, "FDSTORE=1\nFDNAME=%s", name);
	if ((rc = sd_pid_notify_with_fds(0, 0, msg, &fd, 1)) <= 0)
		up->error = rc < 0 ? rc : -ENOTCONN;
	else
		up->sent++;
}

/* Store one descriptor of the state under its number's name. */
static void
upload_fd(int *fd, void *arg)
{
	char	 name[32];

	snprintf(name, sizeof name, FDNAME_PREFIX "%d", *fd);
	upload_named(arg, *fd, name);
}

/* Count the descriptors of a state. */
static void
count_fd(int *fd, void *arg)
{
	(void)fd;
	(*(size_t *)arg)++;
}

/*
 * Whether the store takes n descriptors: $FDSTORE is its bound (the
 * unit sets it for systemd before 254, which sets it itself).
 */
static int
store_fits(size_t n)
{
	const char	*fdstore = getenv("FDSTORE");
	long		 max;

	if (fdstore == NULL)
		return 1;
	max = strtol(fdstore, NULL, 10);
	if (max > 0 && n <= (size_t)max)
		return 1;
	log_warnx("restart: %zu descriptors to hand over, and the descriptor "
	    "store takes %ld (FDSTORE=, FileDescriptorStoreMax=); releasing "
	    "everything", n, max);
	return 0;
}

/* Point a handed-over descriptor at /dev/null: nothing here reaches it. */
static void
detach_fd(int *fd, void *arg)
{
	dup2(*(int *)arg, *fd);
}

/*
 * SIGTERM under systemd: hand every descriptor and the state to the
 * descriptor store.  0 once handed over (the caller then exits without
 * releasing anything), or -1 with nothing handed over: the state is not
 * sent, so the next instance closes whatever did go.
 */
int
reload_fdstore(struct server *srv)
{
	struct upload	 up = { 0, 0 };
	struct snap	 snap;
	size_t		 n = 1;		/* the state's own */
	int		 fd, null;

	if (server_snapshot(srv, &snap) == -1 ||
	    (fd = state_memfd(&snap)) < 0) {
		log_warnx("restart: cannot save the state; releasing "
		    "everything");
		state_free(&snap);
		return -1;
	}
	state_each_fd(&snap, count_fd, &n);
	if (!store_fits(n)) {
		close(fd);
		state_free(&snap);
		return -1;
	}
	state_each_fd(&snap, upload_fd, &up);
	/* Last: without it, the next instance closes what came. */
	upload_named(&up, fd, STATE_FDNAME);
	close(fd);
	if (up.error != 0) {
		log_warnx("restart: the descriptor store took %zu descriptors, "
		    "then: %s; releasing everything (is "
		    "FileDescriptorStoreMax= large enough?)", up.sent,
		    strerror(-up.error));
		state_free(&snap);
		return -1;
	}
	if ((null = open("/dev/null", O_RDWR | O_CLOEXEC)) == -1)
		fatal("open /dev/null");
	state_each_fd(&snap, detach_fd, &null);
	close(null);
	server_handed_over(srv);
	log_info("restart: handed %zu descriptors to the descriptor store",
	    up.sent);
	state_free(&snap);
	return 0;
}

/* Descriptors a state names, sorted, to tell which others to close. */
struct fdset {
	int		*fd;
	size_t		 n;
	size_t		 cap;
};

static void
fdset_add(int *fd, void *arg)
{
	struct fdset	*set = arg;
	int		*grown;

	if (set->n == set->cap) {
		set->cap = set->cap == 0 ? 64 : set->cap * 2;
		if ((grown = reallocarray(set->fd, set->cap,
		    sizeof *grown)) == NULL)
			fatal("reallocarray");
		set->fd = grown;
	}
	set->fd[set->n++] = *fd;
}

static int
int_cmp(const void *a, const void *b)
{
	int	 x = *(const int *)a, y = *(const int *)b;

	return x < y ? -1 : x > y;
}

static int
fdset_has(const struct fdset *set, int fd)
{
	return set->n > 0 && bsearch(&fd, set->fd, set->n, sizeof fd,
	    int_cmp) != NULL;
}

/* Keep an inherited listening socket as a listener, else close it. */
static void
salvage_fd(int fd, struct fdset *listeners)
{
	if (sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) > 0) {
		fdset_add(&fd, listeners);
		return;
	}
	close(fd);
}

/*
 * After an exec: every descriptor from 3 up that the state does not name
 * is the old image's and nobody's now; close it, salvaging listening
 * sockets if the state named none.
 */
static void
close_unnamed(struct snap *snap, int salvage, struct fdset *listeners)
{
	struct fdset	 named = { 0 };
	struct dirent	*de;
	DIR		*dir;
	int		 fd;

	if (snap != NULL)
		state_each_fd(snap, fdset_add, &named);
	if (named.n > 0)
		qsort(named.fd, named.n, sizeof *named.fd, int_cmp);
	if ((dir = opendir("/proc/self/fd")) == NULL) {
		log_warn("reload: /proc/self/fd");
		free(named.fd);
		return;
	}
	while ((de = readdir(dir)) != NULL) {
		fd = atoi(de->d_name);
		if (de->d_name[0] < '0' || de->d_name[0] > '9' || fd < 3 ||
		    fd == dirfd(dir) || fdset_has(&named, fd))
			continue;
		if (salvage)
			salvage_fd(fd, listeners);
		else
			close(fd);
	}
	closedir(dir);
	free(named.fd);
}

/* Read the state in fd, closing it; 1 if some of it was read, else 0. */
static int
read_state(int fd, struct snap *snap)
{
	char	 msg[256];
	int	 rc;

	rc = state_read(fd, snap, msg, sizeof msg);
	close(fd);
	if (rc < 0) {
		log_warnx("restore: %s; serving the listening sockets only, "
		    "every lock released", msg);
		state_free(snap);
		return 0;
	}
	if (rc > 0)
		log_warnx("restore: %s; restoring what was read", msg);
	return 1;
}

/* The reload's state ($LOCKSD_STATE_FD): 1 if read into snap. */
static int
startup_exec(const char *env, struct snap *snap, struct fdset *listeners)
{
	int	 fd = atoi(env), ok;

	unsetenv(STATE_ENV);
	ok = fd >= 3 && read_state(fd, snap);
	close_unnamed(ok ? snap : NULL, !ok || snap->nlisteners == 0,
	    listeners);
	return ok;
}

/* A restart's descriptors: systemd's names and numbers. */
struct named_fds {
	char		**names;
	int		  n;
};

/* Map a state's old descriptor number to the one systemd gave back. */
static void
map_fd(int *fd, void *arg)
{
	struct named_fds	*nf = arg;
	char			 name[32];
	int			 i;

	snprintf(name, sizeof name, FDNAME_PREFIX "%d", *fd);
	for (i = 0; i < nf->n; i++) {
		if (nf->names[i] != NULL && strcmp(nf->names[i], name) == 0) {
			taken_names[ntaken++] = nf->names[i];
			nf->names[i] = NULL;	/* taken */
			*fd = SD_LISTEN_FDS_START + i;
			return;
		}
	}
	*fd = -1;
}

/* Whether a descriptor name is one of ours: "fd" and digits. */
static int
fdname_ours(const char *name)
{
	size_t	 n = strlen(FDNAME_PREFIX);

	return strncmp(name, FDNAME_PREFIX, n) == 0 && name[n] != '\0' &&
	    strspn(name + n, "0123456789") == strlen(name + n);
}

/*
 * A restart: find the state by its name and read it, map its numbers to
 * the descriptors systemd gave back, close what it does not name.  The
 * others (a socket unit's) are listeners.  1 if a state was read.
 */
static int
startup_listen(struct named_fds *nf, struct snap *snap,
    struct fdset *listeners)
{
	int	 i, ok = 0, fd;

	if (nf->n > 0 && (taken_names = calloc(nf->n,
	    sizeof *taken_names)) == NULL)
		fatal("calloc");
	for (i = 0; i < nf->n && !ok; i++) {
		if (nf->names[i] != NULL &&
		    strcmp(nf->names[i], STATE_FDNAME) == 0) {
			taken_names[ntaken++] = nf->names[i];
			nf->names[i] = NULL;
			ok = read_state(SD_LISTEN_FDS_START + i, snap);
		}
	}
	if (ok) {
		state_each_fd(snap, map_fd, nf);
		log_info("restore: from the descriptor store, state of pid "
		    "%ld", (long)snap->pid);
	}
	for (i = 0; i < nf->n; i++) {
		if (nf->names[i] == NULL)
			continue;
		fd = SD_LISTEN_FDS_START + i;
		if (!fdname_ours(nf->names[i])) {
			systemd_check_fd(fd, nf->names[i]);
			fdset_add(&fd, listeners);
		} else {
			if (!ok || snap->nlisteners == 0)
				salvage_fd(fd, listeners);
			else
				close(fd);
			taken_names[ntaken++] = nf->names[i];
			continue;
		}
		free(nf->names[i]);
	}
	free(nf->names);
	return ok;
}

/*
 * At start: the listening sockets inherited (socket activation), and the
 * state of a reload or a restart if there is one.  Returns 1 with the
 * state in snap, or 0; the listeners go into *ret_fds, to free.
 */
int
reload_startup(struct snap *snap, int **ret_fds, size_t *ret_n)
{
	struct fdset		 listeners = { 0 };
	struct named_fds	 nf = { NULL, 0 };
	const char		*env = getenv(STATE_ENV);
	int			 ok, i;

	memset(snap, 0, sizeof *snap);
	if (env != NULL)
		ok = startup_exec(env, snap, &listeners);
	else {
		if ((nf.n = sd_listen_fds_with_names(1, &nf.names)) < 0)
			fatalx("sd_listen_fds_with_names: %s",
			    strerror(-nf.n));
		if (nf.n > 0 && nf.names == NULL &&
		    (nf.names = calloc(nf.n, sizeof *nf.names)) == NULL)
			fatal("calloc");
		for (i = 0; i < nf.n; i++)
			if (nf.names[i] == NULL &&
			    (nf.names[i] = strdup("unknown")) == NULL)
				fatal("strdup");
		ok = startup_listen(&nf, snap, &listeners);
	}
	*ret_fds = listeners.fd;
	*ret_n = listeners.n;
	return ok;
}

/*
 * Take what this instance got from the descriptor store out of it: the
 * store would otherwise keep every connection open after this daemon
 * closes it, and hand stale descriptors to the next restart.
 */
void
reload_store_forget(void)
{
	char	 msg[300];
	size_t	 i;

	for (i = 0; i < ntaken; i++) {
		snprintf(msg, sizeof msg, "FDSTOREREMOVE=1\nFDNAME=%s",
		    taken_names[i]);
		if (sd_notify(0, msg) <= 0 && i == 0)
			log_warnx("restore: cannot empty the descriptor store");
		free(taken_names[i]);
	}
	free(taken_names);
	taken_names = NULL;
	ntaken = 0;
}
