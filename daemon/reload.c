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
 * descriptor store (FDSTORE=1): sockets and lock files in batches under
 * one name per kind, told apart by their identity, which the state
 * records; the others one per message, named after their number here
 * ("~" and base 36); the memfd last, named "~=state".  The next instance
 * gets them back as LISTEN_FDS/LISTEN_FDNAMES and finds each by identity
 * or name, never by position.  Then this instance points every
 * handed-over number at /dev/null, so that its teardown releases nothing
 * the next one holds.
 *
 * At start (reload_startup): the state of either way is read; what it
 * does not name is closed.  A state that cannot be read at all is
 * salvaged: inherited listening sockets are served, all else is closed,
 * which releases it as a crash would.
 */

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <limits.h>
#include <stddef.h>
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
/*
 * A descriptor's name in the store: "~" and its number here in base 36.
 * Short, because systemd passes all names in one LISTEN_FDNAMES, and
 * execve(2) takes at most 128 KiB in one string: about 32,000 names.
 */
#define FDNAME_PREFIX	"~"
/*
 * Sockets and lock files go in batches of BATCH_MAX (the kernel's
 * SCM_MAX_FD) under one name each, told apart by their identity.
 */
#define BATCH_MAX	253
#define BATCH_CONNS	"~=c"	/* "=": never a number's name */
#define BATCH_LOCKS	"~=l"

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
	double		 began;
	int		 fd, off = 0, on = 1;

	if (reload_probe() == -1)
		return -1;
	reload_store_forget_wait();
	began = clock_monotonic();
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
	log_info("reload: executing %s in place (state saved in %.1f ms)",
	    reload_exe, (clock_monotonic() - began) * 1e3);
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

/* What an upload to the store did: how many went, the first error. */
struct upload {
	int		 sock;		/* connected to $NOTIFY_SOCKET */
	size_t		 sent;
	int		 error;
	struct fdset	*batched;	/* sent in a batch already */
};

/*
 * A datagram socket connected to $NOTIFY_SOCKET (a path, or "@" for the
 * abstract namespace), for many messages: sd_pid_notify_with_fds makes a
 * socket per message, a third of the cost of 20,000 of them.  -errno.
 */
static int
notify_connect(void)
{
	const char		*path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un	 sun;
	socklen_t		 len;
	int			 fd;

	if (path == NULL || (path[0] != '/' && path[0] != '@') ||
	    strlen(path) >= sizeof sun.sun_path)
		return -EAFNOSUPPORT;
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, path, strlen(path));
	if (path[0] == '@')
		sun.sun_path[0] = '\0';
	len = offsetof(struct sockaddr_un, sun_path) + strlen(path) +
	    (path[0] == '/');
	if ((fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) == -1)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sun, len) == -1) {
		close(fd);
		return -errno;
	}
	return fd;
}

/* Store n descriptors under one name, in one message. */
static void
upload_fds(struct upload *up, const int *fds, size_t n, const char *name)
{
	union {
		struct cmsghdr	 hdr;
		char		 space[CMSG_SPACE(sizeof(int) * BATCH_MAX)];
	}		 control;
	char		 text[64];
	struct iovec	 iov;
	struct msghdr	 msg;
	struct cmsghdr	*c;

	if (up->error != 0 || n == 0 || n > BATCH_MAX)
		return;
	iov.iov_base = text;
	iov.iov_len = (size_t)snprintf(text, sizeof text,
	    "FDSTORE=1\nFDNAME=%s", name);
	memset(&msg, 0, sizeof msg);
	memset(&control, 0, sizeof control);	/* its padding is sent too */
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = &control;
	msg.msg_controllen = CMSG_SPACE(sizeof(int) * n);
	c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int) * n);
	memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
	while (sendmsg(up->sock, &msg, MSG_NOSIGNAL) == -1) {
		if (errno != EINTR) {
			up->error = -errno;
			return;
		}
	}
	up->sent += n;
}

/* Store one descriptor under its own name. */
static void
upload_named(struct upload *up, int fd, const char *name)
{
	upload_fds(up, &fd, 1, name);
}

/* A descriptor with the identity of its file, for a batch. */
struct idfd {
	struct snap_id	 id;
	int		 fd;
};

static int
idfd_cmp(const void *a, const void *b)
{
	const struct snap_id	*x = &((const struct idfd *)a)->id;
	const struct snap_id	*y = &((const struct idfd *)b)->id;

	return file_id_cmp(x->dev, x->ino, y->dev, y->ino);
}

/*
 * Send the n descriptors of one kind in a (sorted here) in messages of
 * BATCH_MAX under one name: the next instance tells them apart by their
 * identity.  Two of one identity cannot be told apart: they are left out,
 * to go one by one under their own names.  Those sent go into batched.
 */
static void
upload_batch(struct upload *up, struct idfd *a, size_t n, const char *name,
    struct fdset *batched)
{
	int	 fds[BATCH_MAX];
	size_t	 i, k = 0;

	qsort(a, n, sizeof *a, idfd_cmp);
	for (i = 0; i < n; i++) {
		if ((i > 0 && idfd_cmp(&a[i - 1], &a[i]) == 0) ||
		    (i + 1 < n && idfd_cmp(&a[i], &a[i + 1]) == 0))
			continue;
		fds[k++] = a[i].fd;
		fdset_add(&a[i].fd, batched);
		if (k == BATCH_MAX) {
			upload_fds(up, fds, k, name);
			k = 0;
		}
	}
	upload_fds(up, fds, k, name);
}

/*
 * The identity of each connection's socket, for the batch: only a restart
 * needs it, so the snapshot leaves it to here.
 */
static void
note_conn_ids(struct snap *snap)
{
	struct stat	 sb;
	uint32_t	 i;

	for (i = 0; i < snap->nsessions; i++) {
		if (snap->sessions[i].fd >= 0 &&
		    fstat(snap->sessions[i].fd, &sb) == 0) {
			snap->sessions[i].id.dev = sb.st_dev;
			snap->sessions[i].id.ino = sb.st_ino;
		}
	}
}

/* Batch the connections' sockets, then the locks' files. */
static void
upload_batches(struct upload *up, struct snap *snap, struct fdset *batched)
{
	struct idfd	*a;
	uint32_t	 i, n = 0;

	if ((a = calloc((size_t)snap->nsessions + snap->nlocks + 1,
	    sizeof *a)) == NULL)
		return;		/* then all go one by one */
	for (i = 0; i < snap->nsessions; i++)
		if (snap->sessions[i].fd >= 0 && snap->sessions[i].id.ino != 0)
			a[n++] = (struct idfd){ snap->sessions[i].id,
			    snap->sessions[i].fd };
	upload_batch(up, a, n, BATCH_CONNS, batched);
	n = 0;
	for (i = 0; i < snap->nlocks; i++)
		if (snap->locks[i].fd >= 0 && snap->locks[i].id.ino != 0)
			a[n++] = (struct idfd){ snap->locks[i].id,
			    snap->locks[i].fd };
	upload_batch(up, a, n, BATCH_LOCKS, batched);
	free(a);
	if (batched->n > 0)
		qsort(batched->fd, batched->n, sizeof *batched->fd, int_cmp);
}

/* A descriptor's name in the store, from its number here. */
static void
fd_name(int fd, char *buf, size_t size)
{
	char		 digits[16];
	size_t		 n = 0;
	unsigned	 v = (unsigned)fd;

	do {
		digits[n++] = "0123456789abcdefghijklmnopqrstuvwxyz"[v % 36];
		v /= 36;
	} while (v > 0 && n < sizeof digits);
	snprintf(buf, size, FDNAME_PREFIX);
	while (n > 0 && strlen(buf) + 1 < size)
		strncat(buf, &digits[--n], 1);
}

/* Store one descriptor of the state under its number's name. */
static void
upload_fd(int *fd, void *arg)
{
	struct upload	*up = arg;
	char		 name[32];

	if (up->batched != NULL && fdset_has(up->batched, *fd))
		return;
	fd_name(*fd, name, sizeof name);
	upload_named(up, *fd, name);
}

/*
 * systemd hands every name back in one LISTEN_FDNAMES, and execve(2)
 * takes at most 128 KiB in one string (MAX_ARG_STRLEN): room is left for
 * "LISTEN_FDNAMES=" and a socket unit's own names.
 */
#define NAMES_MAX	(128 * 1024 - 4096)

/* What a handover sends: descriptors, and the bytes of their names. */
struct handover_size {
	size_t		 fds;
	size_t		 name_bytes;
};

/* Count one descriptor of a state, its name as long as it may be. */
static void
count_fd(int *fd, void *arg)
{
	struct handover_size	*size = arg;
	char			 name[32];
	size_t			 len;

	fd_name(*fd, name, sizeof name);
	len = strlen(name) > strlen(BATCH_CONNS) ? strlen(name) :
	    strlen(BATCH_CONNS);
	size->fds++;
	size->name_bytes += len + 1;	/* and its ':' */
}

/*
 * Whether the store takes them: $FDSTORE is its bound (the unit sets it
 * for systemd before 254, which sets it itself), and their names must
 * fit in the next instance's environment.
 */
static int
store_fits(const struct handover_size *size)
{
	const char	*fdstore = getenv("FDSTORE");
	long		 max;

	if (size->name_bytes > NAMES_MAX) {
		log_warnx("restart: %zu descriptors to hand over, and their "
		    "names (%zu bytes) would not fit in the next instance's "
		    "LISTEN_FDNAMES (%d bytes); releasing everything",
		    size->fds, size->name_bytes, NAMES_MAX);
		return 0;
	}
	if (fdstore == NULL)
		return 1;
	max = strtol(fdstore, NULL, 10);
	if (max > 0 && size->fds <= (size_t)max)
		return 1;
	log_warnx("restart: %zu descriptors to hand over, and the descriptor "
	    "store takes %ld (FDSTORE=, FileDescriptorStoreMax=); releasing "
	    "everything", size->fds, max);
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
	struct fdset	 batched = { 0 };
	struct upload	 up = { -1, 0, 0, &batched };
	struct snap	 snap;
	struct handover_size	 size = { 1, sizeof STATE_FDNAME };
	double		 began = clock_monotonic(), saved;
	int		 fd, null, saved_ok;

	reload_store_forget_wait();
	if ((saved_ok = server_snapshot(srv, &snap)) == 0)
		note_conn_ids(&snap);
	if (saved_ok == -1 ||
	    (fd = state_memfd(&snap)) < 0) {
		log_warnx("restart: cannot save the state; releasing "
		    "everything");
		state_free(&snap);
		return -1;
	}
	saved = clock_monotonic();
	state_each_fd(&snap, count_fd, &size);
	if (!store_fits(&size)) {
		close(fd);
		state_free(&snap);
		return -1;
	}
	if ((up.sock = notify_connect()) < 0)
		up.error = up.sock;
	upload_batches(&up, &snap, &batched);
	state_each_fd(&snap, upload_fd, &up);
	free(batched.fd);
	/* Last: without it, the next instance closes what came. */
	upload_named(&up, fd, STATE_FDNAME);
	if (up.sock >= 0)
		close(up.sock);
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
	log_info("restart: handed %zu descriptors to the descriptor store "
	    "(state saved in %.1f ms, sent in %.1f ms)", up.sent,
	    (saved - began) * 1e3, (clock_monotonic() - saved) * 1e3);
	state_free(&snap);
	return 0;
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
	/*
	 * Emptied for systemd's copy too: a crash before this instance takes
	 * it out of the store must not restore holders it has since released.
	 */
	if (ftruncate(fd, 0) == -1)
		log_warn("restore: cannot empty the state read");
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
	int		 *order;	/* indexes, sorted by name */
	char		 *used;		/* read or mapped already */
};

static struct named_fds	*sort_nf;	/* for order_cmp */

static int
order_cmp(const void *a, const void *b)
{
	return strcmp(sort_nf->names[*(const int *)a],
	    sort_nf->names[*(const int *)b]);
}

/* The index of the descriptor named name, or -1. */
static int
named_find(struct named_fds *nf, const char *name)
{
	int	 lo = 0, hi = nf->n - 1, mid, c;

	while (lo <= hi) {
		mid = (lo + hi) / 2;
		c = strcmp(nf->names[nf->order[mid]], name);
		if (c == 0)
			return nf->order[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return -1;
}

/* Map a state's old descriptor number to the one systemd gave back. */
static void
map_fd(int *fd, void *arg)
{
	struct named_fds	*nf = arg;
	char			 name[32];
	int			 i;

	fd_name(*fd, name, sizeof name);
	if ((i = named_find(nf, name)) == -1 || nf->used[i]) {
		*fd = -1;
		return;
	}
	nf->used[i] = 1;	/* a second reference finds none */
	*fd = SD_LISTEN_FDS_START + i;
}

/* The descriptors of a batch, by identity: idfd with their indexes. */
static size_t
batch_table(struct named_fds *nf, const char *name, struct idfd **ret)
{
	struct idfd	*t;
	struct stat	 sb;
	size_t		 n = 0;
	int		 i;

	if ((t = calloc((size_t)nf->n + 1, sizeof *t)) == NULL)
		fatal("calloc");
	for (i = 0; i < nf->n; i++) {
		if (strcmp(nf->names[i], name) != 0 ||
		    fstat(SD_LISTEN_FDS_START + i, &sb) == -1)
			continue;
		t[n].id.dev = sb.st_dev;
		t[n].id.ino = sb.st_ino;
		t[n++].fd = i;
	}
	if (n > 0)
		qsort(t, n, sizeof *t, idfd_cmp);
	*ret = t;
	return n;
}

/* The descriptor of the batch with identity id, taken once; or -1. */
static int
batch_take(struct named_fds *nf, struct idfd *t, size_t n,
    const struct snap_id *id)
{
	struct idfd	 key = { *id, -1 }, *found;

	if (n == 0 || (found = bsearch(&key, t, n, sizeof *t,
	    idfd_cmp)) == NULL || nf->used[found->fd])
		return -1;
	nf->used[found->fd] = 1;
	return SD_LISTEN_FDS_START + found->fd;
}

/*
 * Map the state's descriptors onto what systemd gave back: sockets and
 * lock files of a batch by their identity, every other by its name.
 */
static void
map_state(struct named_fds *nf, struct snap *snap)
{
	struct idfd	*conns, *locks;
	size_t		 nc, nl;
	int		*sfd, *lfd;
	uint32_t	 i;

	nc = batch_table(nf, BATCH_CONNS, &conns);
	nl = batch_table(nf, BATCH_LOCKS, &locks);
	if ((sfd = calloc((size_t)snap->nsessions + 1, sizeof *sfd)) == NULL ||
	    (lfd = calloc((size_t)snap->nlocks + 1, sizeof *lfd)) == NULL)
		fatal("calloc");
	for (i = 0; i < snap->nsessions; i++)
		sfd[i] = snap->sessions[i].fd < 0 ? -1 :
		    batch_take(nf, conns, nc, &snap->sessions[i].id);
	for (i = 0; i < snap->nlocks; i++)
		lfd[i] = snap->locks[i].fd < 0 ? -1 :
		    batch_take(nf, locks, nl, &snap->locks[i].id);
	state_each_fd(snap, map_fd, nf);
	for (i = 0; i < snap->nsessions; i++)
		if (sfd[i] >= 0)
			snap->sessions[i].fd = sfd[i];
	for (i = 0; i < snap->nlocks; i++)
		if (lfd[i] >= 0)
			snap->locks[i].fd = lfd[i];
	free(sfd);
	free(lfd);
	free(conns);
	free(locks);
}

/* Whether a descriptor name is one of ours ("~" led, the state's too). */
static int
fdname_ours(const char *name)
{
	return strncmp(name, FDNAME_PREFIX, strlen(FDNAME_PREFIX)) == 0;
}

/*
 * A restart: find the newest state by its name and read it, map its
 * numbers to the descriptors systemd gave back by their names, and close
 * ours that it does not name (left by an earlier upload, or past what
 * was read).  The others (a socket unit's) are listeners.  Every name of
 * ours is removed from the store once running (reload_store_forget).
 * 1 if a state was read.
 */
static int
startup_listen(struct named_fds *nf, struct snap *snap,
    struct fdset *listeners)
{
	const char	*name;
	int		 i, ok = 0, fd, st;

	if (nf->n > 0 && ((taken_names = calloc(nf->n,
	    sizeof *taken_names)) == NULL || (nf->order = calloc(nf->n,
	    sizeof *nf->order)) == NULL || (nf->used = calloc(nf->n, 1)) ==
	    NULL))
		fatal("calloc");
	for (i = 0; i < nf->n; i++)
		nf->order[i] = i;
	sort_nf = nf;
	if (nf->n > 0)
		qsort(nf->order, nf->n, sizeof *nf->order, order_cmp);
	/* Each name once: one FDSTOREREMOVE=1 removes all of that name. */
	for (i = 0; i < nf->n; i++) {
		name = nf->names[nf->order[i]];
		if (!fdname_ours(name) || (ntaken > 0 &&
		    strcmp(taken_names[ntaken - 1], name) == 0))
			continue;
		if ((taken_names[ntaken++] = strdup(name)) == NULL)
			fatal("strdup");
	}
	if ((st = named_find(nf, STATE_FDNAME)) >= 0) {
		nf->used[st] = 1;
		ok = read_state(SD_LISTEN_FDS_START + st, snap);
	}
	if (ok) {
		map_state(nf, snap);
		log_info("restore: from the descriptor store, state of pid "
		    "%ld", (long)snap->pid);
	}
	for (i = 0; i < nf->n; i++) {
		fd = SD_LISTEN_FDS_START + i;
		if (nf->used[i])
			;	/* read, or mapped */
		else if (!fdname_ours(nf->names[i])) {
			if (systemd_take_fd(fd, nf->names[i], ok) == 0)
				fdset_add(&fd, listeners);
		} else if (!ok || snap->nlisteners == 0)
			salvage_fd(fd, listeners);
		else
			close(fd);
		free(nf->names[i]);
	}
	free(nf->names);
	free(nf->order);
	free(nf->used);
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
	struct named_fds	 nf = { NULL, 0, NULL, NULL };
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

/* Send FDSTOREREMOVE=1 for every name taken, off the event loop. */
static void *
forget_main(void *arg)
{
	char	 msg[300];
	size_t	 i, failed = 0;

	(void)arg;
	for (i = 0; i < ntaken; i++) {
		snprintf(msg, sizeof msg, "FDSTOREREMOVE=1\nFDNAME=%s",
		    taken_names[i]);
		if (sd_notify(0, msg) <= 0)
			failed++;
	}
	if (failed > 0)
		log_warnx("restore: %zu descriptors could not be removed from "
		    "the descriptor store", failed);
	return NULL;
}

static pthread_t	 forget_thread;
static int		 forgetting;

/*
 * Take what this instance got from the descriptor store out of it: the
 * store would otherwise keep every connection open after this daemon
 * closes it.  A thread sends the messages, so the event loop serves
 * clients meanwhile; one message per name is how systemd 252 removes.
 */
void
reload_store_forget(void)
{
	if (ntaken == 0)
		return;
	if (pthread_create(&forget_thread, NULL, forget_main, NULL) != 0) {
		reload_store_forget_wait();	/* sends them itself */
		return;
	}
	forgetting = 1;
}

/* Wait for the store to be emptied; before exec, a restart, or exit. */
void
reload_store_forget_wait(void)
{
	size_t	 i;

	if (forgetting)
		pthread_join(forget_thread, NULL);
	else if (ntaken > 0)	/* not yet sent: stale names would pile up */
		forget_main(NULL);
	forgetting = 0;
	for (i = 0; i < ntaken; i++)
		free(taken_names[i]);
	free(taken_names);
	taken_names = NULL;
	ntaken = 0;
}
