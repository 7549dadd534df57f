/*
 * The descriptor store's test double (fdstore.h): what systemd 252 does
 * with sd_pid_notify_with_fds(FDSTORE=1, FDNAME=...), without PID 1.
 */

#include <linux/kcmp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fdstore.h"

#define NOTIFY_MAX_FDS	768	/* systemd reads at most this many per message */

/* Bind the notify socket in dir and point $NOTIFY_SOCKET at it. */
int
fdstore_open(struct fdstore *fs, const char *dir)
{
	struct sockaddr_un	 sun;
	int			 size = 8 << 20;

	memset(fs, 0, sizeof *fs);
	fs->listener = -1;
	fs->state_copy = -1;
	fs->max = FDSTORE_MAX;
	snprintf(fs->path, sizeof fs->path, "%s/notify", dir);
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof sun.sun_path, "%s", fs->path);
	unlink(fs->path);
	if ((fs->sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC |
	    SOCK_NONBLOCK, 0)) == -1 ||
	    bind(fs->sock, (struct sockaddr *)&sun, sizeof sun) == -1)
		return -1;
	setsockopt(fs->sock, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
	setenv("NOTIFY_SOCKET", fs->path, 1);
	return 0;
}

/* Close everything kept. */
void
fdstore_close(struct fdstore *fs)
{
	size_t	 i;

	for (i = 0; i < fs->n; i++) {
		close(fs->fds[i]);
		free(fs->names[i]);
	}
	free(fs->fds);
	free(fs->names);
	free(fs->ids);
	free(fs->slots);
	if (fs->state_copy >= 0)
		close(fs->state_copy);
	if (fs->sock >= 0)
		close(fs->sock);
	unlink(fs->path);
	unsetenv("NOTIFY_SOCKET");
	memset(fs, 0, sizeof *fs);
	fs->sock = -1;
	fs->state_copy = -1;
}

/* How many kept descriptors have name (NULL: all). */
size_t
fdstore_count(const struct fdstore *fs, const char *name)
{
	size_t	 i, n = 0;

	for (i = 0; i < fs->n; i++)
		n += name == NULL || strcmp(fs->names[i], name) == 0;
	return n;
}

static size_t
id_hash(const struct fdstore_id *id, size_t nslots)
{
	return (size_t)((id->ino * 0x9e3779b97f4a7c15ULL) ^ id->dev) &
	    (nslots - 1);
}

/* Hash every kept descriptor's file anew, with room for as many more. */
static void
slots_rebuild(struct fdstore *fs)
{
	size_t	 i, h;

	free(fs->slots);
	for (fs->nslots = 1024; fs->nslots < 4 * (fs->n + 1); fs->nslots *= 2)
		;
	fs->slots = calloc(fs->nslots, sizeof *fs->slots);
	for (i = 0; i < fs->n; i++) {
		for (h = id_hash(&fs->ids[i], fs->nslots); fs->slots[h] != 0;
		    h = (h + 1) & (fs->nslots - 1))
			;
		fs->slots[h] = i + 1;
	}
}

/*
 * Whether fd is an open file description kept already, as systemd 252
 * checks: it compares each new one with every one kept (kcmp), which
 * costs PID 1 n*n/2 calls for n descriptors (BENCHMARKS.md).  The double
 * compares only those of one file, found by hash, to stay cheap itself.
 */
static int
store_has(struct fdstore *fs, int fd, const struct fdstore_id *id)
{
	pid_t	 pid = getpid();
	size_t	 h, i;

	if (fs->nslots == 0 || 2 * (fs->n + 1) > fs->nslots)
		slots_rebuild(fs);
	for (h = id_hash(id, fs->nslots); fs->slots[h] != 0;
	    h = (h + 1) & (fs->nslots - 1)) {
		i = fs->slots[h] - 1;
		if (fs->ids[i].dev == id->dev && fs->ids[i].ino == id->ino &&
		    syscall(SYS_kcmp, pid, pid, KCMP_FILE, fs->fds[i], fd) == 0)
			return 1;
	}
	return 0;
}

/* Hash the descriptor just kept, at fs->n - 1. */
static void
slots_add(struct fdstore *fs)
{
	size_t	 h;

	for (h = id_hash(&fs->ids[fs->n - 1], fs->nslots); fs->slots[h] != 0;
	    h = (h + 1) & (fs->nslots - 1))
		;
	fs->slots[h] = fs->n;
}

/* Drop the kept descriptor i. */
void
fdstore_drop(struct fdstore *fs, size_t i)
{
	close(fs->fds[i]);
	free(fs->names[i]);
	fs->n--;
	memmove(&fs->fds[i], &fs->fds[i + 1], (fs->n - i) * sizeof *fs->fds);
	memmove(&fs->names[i], &fs->names[i + 1], (fs->n - i) *
	    sizeof *fs->names);
	memmove(&fs->ids[i], &fs->ids[i + 1], (fs->n - i) * sizeof *fs->ids);
	fs->nslots = 0;		/* the indexes moved */
}

/* Keep one descriptor under name, or close it past the bound. */
void
fdstore_add(struct fdstore *fs, int fd, const char *name)
{
	struct fdstore_id	 id = { 0, 0 };
	struct stat		 sb;

	if (fs->n >= fs->max) {
		close(fd);
		fs->refused++;
		return;
	}
	if (fstat(fd, &sb) == 0)
		id = (struct fdstore_id){ sb.st_dev, sb.st_ino };
	if (store_has(fs, fd, &id)) {
		close(fd);
		fs->duplicates++;
		return;
	}
	if ((fs->n & 255) == 0) {
		fs->fds = realloc(fs->fds, (fs->n + 256) * sizeof *fs->fds);
		fs->names = realloc(fs->names, (fs->n + 256) *
		    sizeof *fs->names);
		fs->ids = realloc(fs->ids, (fs->n + 256) * sizeof *fs->ids);
	}
	fs->fds[fs->n] = fd;
	fs->names[fs->n] = strdup(name);
	fs->ids[fs->n] = id;
	fs->n++;
	slots_add(fs);
}

/* FDSTOREREMOVE=1: close every kept descriptor of that name. */
static void
store_remove(struct fdstore *fs, const char *name)
{
	size_t	 i = 0;

	while (i < fs->n) {
		if (strcmp(fs->names[i], name) != 0)
			i++;
		else
			fdstore_drop(fs, i);
	}
}

/* systemd polls what it keeps, and drops a socket whose peer hung up. */
static void
store_sweep_hung_up(struct fdstore *fs)
{
	struct pollfd	 pfd;
	size_t		 i = 0;

	while (i < fs->n) {
		pfd = (struct pollfd){ fs->fds[i], 0, 0 };
		if (poll(&pfd, 1, 0) == 1 && (pfd.revents & (POLLHUP |
		    POLLERR))) {
			fdstore_drop(fs, i);
			fs->hung_up++;
		} else
			i++;
	}
}

/* Newest first, as systemd 252 keeps them (it prepends each). */
static void
store_reverse(struct fdstore *fs)
{
	struct fdstore_id	 id;
	size_t			 i, j;
	int			 fd;
	char			*name;

	for (i = 0, j = fs->n; i + 1 < j; i++, j--) {
		fd = fs->fds[i];
		fs->fds[i] = fs->fds[j - 1];
		fs->fds[j - 1] = fd;
		name = fs->names[i];
		fs->names[i] = fs->names[j - 1];
		fs->names[j - 1] = name;
		id = fs->ids[i];
		fs->ids[i] = fs->ids[j - 1];
		fs->ids[j - 1] = id;
	}
	fs->nslots = 0;		/* the indexes moved */
}

/* Keep a copy of the state handed back, to see what became of it. */
static void
store_copy_state(struct fdstore *fs)
{
	size_t	 i;

	if (fs->state_copy >= 0)
		close(fs->state_copy);
	fs->state_copy = -1;
	for (i = 0; i < fs->n; i++)
		if (strcmp(fs->names[i], "~=state") == 0)
			fs->state_copy = fcntl(fs->fds[i], F_DUPFD_CLOEXEC, 3);
}

/* The value of a "KEY=value" line of a message, or NULL. */
static const char *
field(const char *msg, const char *key, char *buf, size_t size)
{
	size_t		 len = strlen(key);
	const char	*p = msg, *end;

	while (p != NULL && *p != '\0') {
		if (strncmp(p, key, len) == 0 && p[len] == '=') {
			p += len + 1;
			end = strchr(p, '\n');
			snprintf(buf, size, "%.*s", end != NULL ?
			    (int)(end - p) : (int)strlen(p), p);
			return buf;
		}
		p = strchr(p, '\n');
		if (p != NULL)
			p++;
	}
	return NULL;
}

/* Handle one datagram: its text, and the descriptors that came with it. */
static void
store_message(struct fdstore *fs, const char *text, int *fds, size_t nfds)
{
	char		 name[256], flag[16];
	const char	*fdname;
	size_t		 i;

	fdname = field(text, "FDNAME", name, sizeof name);
	if (field(text, "FDSTOREREMOVE", flag, sizeof flag) != NULL &&
	    strcmp(flag, "1") == 0 && fdname != NULL)
		store_remove(fs, fdname);
	if (field(text, "FDSTORE", flag, sizeof flag) != NULL &&
	    strcmp(flag, "1") == 0) {
		fs->messages++;
		for (i = 0; i < nfds; i++)
			fdstore_add(fs, fds[i], fdname != NULL ? fdname :
			    "stored");
		return;
	}
	for (i = 0; i < nfds; i++)
		close(fds[i]);
}

/* Read every datagram waiting; returns how many. */
int
fdstore_drain(struct fdstore *fs)
{
	union {
		struct cmsghdr	 hdr;
		char		 space[CMSG_SPACE(sizeof(int) *
				    NOTIFY_MAX_FDS)];
	}		 control;
	char		 text[4096];
	struct iovec	 iov = { text, sizeof text - 1 };
	struct msghdr	 msg;
	struct cmsghdr	*c;
	ssize_t		 n;
	int		 count = 0;

	for (;;) {
		memset(&msg, 0, sizeof msg);
		msg.msg_iov = &iov;
		msg.msg_iovlen = 1;
		msg.msg_control = &control;
		msg.msg_controllen = sizeof control;
		if ((n = recvmsg(fs->sock, &msg, MSG_CMSG_CLOEXEC)) == -1)
			return count;
		text[n] = '\0';
		count++;
		for (c = CMSG_FIRSTHDR(&msg); c != NULL;
		    c = CMSG_NXTHDR(&msg, c)) {
			if (c->cmsg_level == SOL_SOCKET &&
			    c->cmsg_type == SCM_RIGHTS)
				store_message(fs, text, (int *)(void *)
				    CMSG_DATA(c), (c->cmsg_len -
				    CMSG_LEN(0)) / sizeof(int));
		}
		if (CMSG_FIRSTHDR(&msg) == NULL)
			store_message(fs, text, NULL, 0);
	}
}

/*
 * Move the kept descriptors (and the socket unit's listener) to 3 and up,
 * in the child, for exec, in place: one that sits in a slot another
 * needs moves out of the way first, so only one spare descriptor is
 * ever needed.
 */
static void
child_place_fds(struct fdstore *fs)
{
	size_t	 i, n = fs->n + (fs->listener >= 0);
	int	*want = calloc(n + 1, sizeof *want);
	int	*in_slot = calloc(n + 1, sizeof *in_slot);	/* index + 1 */
	int	 top = 3 + (int)n, slot;

	for (i = 0; i < fs->n; i++)
		want[i] = fs->fds[i];
	if (fs->listener >= 0)
		want[fs->n] = fs->listener;
	for (i = 0; i < n; i++)
		if (want[i] >= 3 && want[i] < top)
			in_slot[want[i] - 3] = (int)i + 1;
	for (i = 0; i < n; i++) {
		slot = 3 + (int)i;
		if (want[i] == slot) {
			fcntl(slot, F_SETFD, 0);	/* dup2 would clear it */
			continue;
		}
		/* Whoever sits in the slot moves up first. */
		if (in_slot[i] != 0 && (size_t)in_slot[i] - 1 != i) {
			want[in_slot[i] - 1] = fcntl(slot, F_DUPFD, top);
			close(slot);
		}
		dup2(want[i], slot);
		if (want[i] >= top)
			close(want[i]);
		else if (want[i] >= 3)
			in_slot[want[i] - 3] = 0;
		want[i] = slot;
		in_slot[i] = (int)i + 1;
	}
	free(want);
	free(in_slot);
}

/* LISTEN_FDNAMES, as systemd joins them. */
static char *
names_joined(const struct fdstore *fs)
{
	size_t	 i, len = 16;
	char	*s;

	for (i = 0; i < fs->n; i++)
		len += strlen(fs->names[i]) + 1;
	if ((s = calloc(1, len)) == NULL)
		return NULL;
	for (i = 0; i < fs->n; i++) {
		if (i > 0)
			strcat(s, ":");
		strcat(s, fs->names[i]);
	}
	if (fs->listener >= 0)
		strcat(s, fs->n > 0 ? ":locksd.socket" : "locksd.socket");
	return s;
}

/* Exec the next instance in the child, as systemd would start it. */
static void
child_exec(struct fdstore *fs, const struct h_daemon *d)
{
	const char	*wrapper = getenv("LOCKSD_WRAPPER");
	const char	*argv[20];
	char		 num[32], *names = names_joined(fs);
	size_t		 i, n = 0;
	int		 fd;

	child_place_fds(fs);
	/* PID 1 passes nothing else: close what the test process had open. */
	close_range(3 + (unsigned)(fs->n + (fs->listener >= 0)), ~0U, 0);
	fd = open(d->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
	    0600);
	if (fd != -1) {
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
	}
	snprintf(num, sizeof num, "%zu", fs->n + (fs->listener >= 0));
	setenv("LISTEN_FDS", num, 1);
	setenv("LISTEN_FDNAMES", names != NULL ? names : "", 1);
	snprintf(num, sizeof num, "%ld", (long)getpid());
	setenv("LISTEN_PID", num, 1);
	umask(077);
	argv[n++] = LOCKSD_PATH;
	argv[n++] = "--socket";
	argv[n++] = d->socket_path;
	argv[n++] = "--lock-dir";
	argv[n++] = d->lock_dir;
	for (i = 0; i < 4 && d->extra[i] != NULL; i++)
		argv[n++] = d->extra[i];
	argv[n] = NULL;
	if (wrapper != NULL && *wrapper != '\0') {
		memmove(argv + 4, argv, (n + 1) * sizeof *argv);
		argv[0] = "sh";
		argv[1] = "-c";
		argv[2] = "exec $LOCKSD_WRAPPER \"$@\"";
		argv[3] = "sh";
		execv("/bin/sh", (char *const *)argv);
	} else
		execv(LOCKSD_PATH, (char *const *)argv);
	_exit(127);
}

/*
 * systemctl restart: SIGTERM the daemon, keep what it stores until it
 * exits, then start the next one with it.  0 once it is started; the
 * caller then drains the store while it starts (fdstore_drain), as it
 * empties the store with FDSTOREREMOVE=1 and blocks while no one reads.
 */
int
fdstore_restart(struct fdstore *fs, struct h_daemon *d)
{
	/* A pidfd wakes the wait at the exit, as SIGCHLD wakes PID 1. */
	int		 pidfd = (int)syscall(SYS_pidfd_open, d->pid, 0);
	struct pollfd	 pfd[2] = { { fs->sock, POLLIN, 0 },
			    { pidfd, POLLIN, 0 } };
	double		 deadline = h_now() + h_slow(2 * H_START_SECS);
	pid_t		 pid;
	int		 status;

	kill(d->pid, SIGTERM);
	for (;;) {
		fdstore_drain(fs);
		if (waitpid(d->pid, &status, WNOHANG) == d->pid)
			break;
		if (h_now() > deadline) {
			snprintf(fs->error, sizeof fs->error, "the daemon did "
			    "not exit after SIGTERM");
			if (pidfd >= 0)
				close(pidfd);
			return -1;
		}
		poll(pfd, pidfd >= 0 ? 2 : 1, 10);
	}
	if (pidfd >= 0)
		close(pidfd);
	fdstore_drain(fs);
	if (getenv("FDSTORE_DEBUG"))
		fprintf(stderr, "old exited after %.3f s, %zu fds\n",
		    h_now() - (deadline - h_slow(2 * H_START_SECS)), fs->n);
	d->pid = 0;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		snprintf(fs->error, sizeof fs->error, "the daemon ended "
		    "with status %d", status);
		return -1;
	}
	if (fs->between != NULL)
		fs->between(fs, fs->between_arg);
	store_sweep_hung_up(fs);
	store_reverse(fs);
	store_copy_state(fs);
	fflush(NULL);
	if ((pid = fork()) == -1)
		return -1;
	if (pid == 0)
		child_exec(fs, d);
	/* It empties the store as it starts: the caller drains it. */
	d->pid = pid;
	return 0;
}
