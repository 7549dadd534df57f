/*
 * The server: the listening socket, admission, signals, periodic timers,
 * and the state every session shares (the lock table and the session
 * host).  Admission happens here, before a session or a connection exists.
 */

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>

#include <sys/file.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <search.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/listener.h>

#include <systemd/sd-daemon.h>

#include "daemon.h"

#define TOKEN_RESERVE	1000000000LL	/* tokens reserved on disk ahead */
#define CLAIM_FILE	".locksd"	/* flocked: this daemon owns the dir */
#define OUTPUT_HIGH	(1024 * 1024)	/* unread reply bytes, by default */

struct server {
	struct event_base	*base;
	struct evconnlistener	**listeners;
	size_t			 nlisteners;
	int			 own_socket;	/* bound by us: unlink at exit */
	char			*socket_path;
	int			 lock_dirfd;
	char			*lock_dir;
	int			 claim_fd;	/* flocked CLAIM_FILE */
	int			 nlink_known;	/* the fs counts dir links */
	int			 failed;	/* exit non-zero */
	struct locktab		*locktab;
	struct store_etcd	*etcd;		/* --etcd's store, or NULL */
	struct locktab		*cluster;	/* its table */
	struct store_file	*store;		/* under the lock table */
	struct outside_cache	*outside;	/* the last /proc/locks scan */
	struct listing		 listing;
	struct session_host	 host;		/* sessions and what they share */
	size_t			 max_clients;
	size_t			 max_clients_per_uid;
	void			*uid_counts;	/* tsearch(3) of uid_count */
	const struct access	*access;
	int64_t			 token_reserve;
	int64_t			 token_ceiling;	/* durably saved */
	int			 token_error;	/* errno of the last save */
	char			 token_msg[PATH_MAX + 128];
	struct event		*sigterm_ev;
	struct event		*sigint_ev;
	struct event		*sighup_ev;
	struct event		*tick_ev;
	struct event		*resume_ev;
	struct systemd		*sd;
	struct metrics_file	*metrics_file;	/* --metrics-file, or NULL */
	int			 handed_over;	/* to a next instance */
	int32_t			 former[SNAP_FORMER_MAX]; /* restored from */
	size_t			 nformer;
};

/* How many connections one uid has open. */
struct uid_count {
	uid_t	 uid;
	size_t	 n;
};

static void	server_host_init(struct server *, const struct server_config *);
static void	server_cluster_init(struct server *,
		    const struct server_config *);
static void	server_restore(struct server *, struct snap *);
static void	server_session_closed(const struct peer *, int, void *);

/*
 * Whether a directory can be trusted with the socket or the lock files:
 * owned by us or root, and writable by no one else (as tmux checks its
 * socket directory).  A sticky bit excuses others' write access only for
 * the socket's directory (sticky_ok): in a lock dir they could still make
 * the daemon's own dot-files first.  Returns NULL, or why not.
 */
static const char *
dir_untrusted(const struct stat *sb, int sticky_ok, char *buf, size_t size)
{
	uid_t	 euid = geteuid();

	if (!S_ISDIR(sb->st_mode))
		return "it is not a directory";
	if (sb->st_uid != euid && sb->st_uid != 0) {
		if (euid == 0)
			snprintf(buf, size, "it is owned by uid %ld, not by "
			    "root", (long)sb->st_uid);
		else
			snprintf(buf, size, "it is owned by uid %ld, not by "
			    "uid %ld or root", (long)sb->st_uid, (long)euid);
		return buf;
	}
	if ((sb->st_mode & (S_IWGRP | S_IWOTH)) != 0 &&
	    (!sticky_ok || (sb->st_mode & S_ISVTX) == 0)) {
		snprintf(buf, size, "group or others may write to it%s "
		    "(mode %04o)", sticky_ok ? " and it is not sticky" : "",
		    (unsigned)sb->st_mode & 07777);
		return buf;
	}
	return NULL;
}

/*
 * Whether a path's directory entry can be trusted to stay: a symlink
 * another user owns could be pointed elsewhere at any time.  Then the
 * directory it leads to must pass dir_untrusted.
 */
static const char *
path_untrusted(const char *path, int sticky_ok, char *buf, size_t size)
{
	struct stat	 sb;
	uid_t		 euid = geteuid();

	if (lstat(path, &sb) == -1) {
		snprintf(buf, size, "%s", strerror(errno));
		return buf;
	}
	if (S_ISLNK(sb.st_mode) && sb.st_uid != euid && sb.st_uid != 0) {
		snprintf(buf, size, "it is a symbolic link owned by uid %ld",
		    (long)sb.st_uid);
		return buf;
	}
	if (stat(path, &sb) == -1) {
		snprintf(buf, size, "%s", strerror(errno));
		return buf;
	}
	return dir_untrusted(&sb, sticky_ok, buf, size);
}

/* The directory that holds path: "." for a bare name, "/" at the top. */
void
server_parent_dir(const char *path, char *dir, size_t size)
{
	char	*slash;

	if (snprintf(dir, size, "%s", path) >= (int)size)
		fatalx("path too long: %s", path);
	if ((slash = strrchr(dir, '/')) == NULL)
		snprintf(dir, size, ".");
	else if (slash == dir)
		slash[1] = '\0';
	else
		*slash = '\0';
}

/* Check the directory a socket we bind goes into. */
static void
socket_dir_check(const char *path)
{
	const char	*why;
	char		 dir[PATH_MAX], buf[PATH_MAX + 64];

	server_parent_dir(path, dir, sizeof dir);
	if ((why = path_untrusted(dir, 1, buf, sizeof buf)) != NULL)
		fatalx("refusing the socket directory %s: %s", dir, why);
}

/* Return 1 if a daemon answers on path. */
static int
socket_is_live(const struct sockaddr_un *sun)
{
	int	 fd, live;

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1)
		fatal("socket");
	live = connect(fd, (const struct sockaddr *)sun, sizeof *sun) == 0;
	close(fd);
	return live;
}

/*
 * Make path free for bind: refuse if a live daemon owns it or it is not a
 * socket, and unlink only a stale socket left by a dead daemon.
 */
static void
socket_claim(const struct sockaddr_un *sun)
{
	struct stat	 sb;

	if (lstat(sun->sun_path, &sb) == -1) {
		if (errno == ENOENT)
			return;
		fatal("%s", sun->sun_path);
	}
	if (!S_ISSOCK(sb.st_mode))
		fatalx("%s exists and is not a socket; refusing to remove it",
		    sun->sun_path);
	if (socket_is_live(sun))
		fatalx("another locksd is already running on %s",
		    sun->sun_path);
	log_info("removing stale socket %s", sun->sun_path);
	if (unlink(sun->sun_path) == -1)
		fatal("unlink %s", sun->sun_path);
}

/* Create, bind and listen on the control socket. */
static int
socket_listen(const char *path)
{
	struct sockaddr_un	 sun;
	int			 fd;

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof sun.sun_path)
		fatalx("socket path too long: %s", path);
	strcpy(sun.sun_path, path);
	socket_dir_check(path);
	socket_claim(&sun);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd == -1)
		fatal("socket");
	if (bind(fd, (struct sockaddr *)&sun, sizeof sun) == -1)
		fatal("bind %s", path);
	/* Who may use the broker is the daemon's call, not the file mode's. */
	if (chmod(path, 0666) == -1)
		fatal("chmod %s", path);
	if (listen(fd, SOMAXCONN) == -1)
		fatal("listen %s", path);
	return fd;
}

/* Open (creating if missing) the lock directory, and check who owns it. */
static int
lock_dir_open(const char *path)
{
	struct stat	 sb;
	const char	*why;
	char		 buf[128];
	int		 fd;

	if (mkdir(path, 0755) == -1 && errno != EEXIST)
		fatal("mkdir %s", path);
	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (fd == -1)
		fatal("open lock dir %s", path);
	if (fstat(fd, &sb) == -1)
		fatal("fstat lock dir %s", path);
	if ((why = dir_untrusted(&sb, 0, buf, sizeof buf)) != NULL)
		fatalx("refusing the lock directory %s: %s", path, why);
	return fd;
}

/* The pid a claim file names, or 0 if it names none. */
static long
lock_dir_claimant(int fd)
{
	char	 buf[32];
	ssize_t	 n;

	if ((n = pread(fd, buf, sizeof buf - 1, 0)) <= 0)
		return 0;
	buf[n] = '\0';
	return strtol(buf, NULL, 10);
}

/*
 * Take the flock that proves a daemon alone serves the lock dir dirfd:
 * an exclusive flock on a dot-file in it.  Returns the file's fd, or
 * -errno (-EWOULDBLOCK: another daemon has it).
 */
static int
lock_dir_try_claim(int dirfd)
{
	int	 fd, error;

	fd = openat(dirfd, CLAIM_FILE, O_RDWR | O_CREAT | O_CLOEXEC |
	    O_NOFOLLOW | O_NONBLOCK | O_NOCTTY, 0600);
	if (fd == -1)
		return -errno;
	if (flock(fd, LOCK_EX | LOCK_NB) == -1) {
		error = -errno;
		close(fd);
		return error;
	}
	return fd;
}

/*
 * Prove this daemon alone serves the lock dir, for its whole life, with
 * our pid in the claim file.  Two daemons on one dir would interleave
 * their tokens.
 */
static int
lock_dir_claim(int dirfd, const char *path)
{
	char	 buf[32];
	long	 pid;
	int	 fd, len;

	if ((fd = lock_dir_try_claim(dirfd)) == -EWOULDBLOCK) {
		fd = openat(dirfd, CLAIM_FILE, O_RDONLY | O_CLOEXEC |
		    O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
		pid = fd >= 0 ? lock_dir_claimant(fd) : 0;
		if (pid > 0)
			fatalx("another locksd (pid %ld) already uses the lock "
			    "dir %s", pid, path);
		fatalx("another locksd already uses the lock dir %s", path);
	}
	if (fd < 0) {
		errno = -fd;
		fatal("cannot claim the lock dir: %s/%s", path, CLAIM_FILE);
	}
	len = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) == -1 || pwrite(fd, buf, (size_t)len, 0) != len)
		log_warn("cannot write the pid into %s/%s", path, CLAIM_FILE);
	return fd;
}

static void	server_accept_peer(struct server *, int);

/* Admit each accepted socket, or refuse it. */
static void
server_accept_cb(struct evconnlistener *listener, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	(void)listener;
	(void)sa;
	(void)salen;
	server_accept_peer(arg, fd);
}

/* Accept again on every listening socket. */
static void
server_listeners_enable(struct server *srv)
{
	size_t	 i;

	for (i = 0; i < srv->nlisteners; i++)
		evconnlistener_enable(srv->listeners[i]);
}

/* Resume accepting after a pause for lack of descriptors. */
static void
server_resume_cb(evutil_socket_t fd, short events, void *arg)
{
	struct server	*srv = arg;

	(void)fd;
	(void)events;
	server_listeners_enable(srv);
}

/*
 * On EMFILE/ENFILE stop accepting for a moment, so the loop does not spin
 * on a listener it cannot serve; a closing connection resumes it sooner.
 */
static void
server_accept_error_cb(struct evconnlistener *listener, void *arg)
{
	struct server	*srv = arg;
	struct timeval	 tv = { 1, 0 };
	int		 error = errno;

	log_warn("accept");
	if (error == EMFILE || error == ENFILE)
		srv->host.metrics.refused[METRICS_REFUSED_FD_LIMIT]++;
	/* Idle lock files are the descriptors that can go at once. */
	if ((error == EMFILE || error == ENFILE) &&
	    locktab_close_idle(srv->locktab) > 0)
		return;
	if (error == EMFILE || error == ENFILE || error == ENOBUFS ||
	    error == ENOMEM) {
		evconnlistener_disable(listener);
		evtimer_add(srv->resume_ev, &tv);
	}
}

/*
 * SIGTERM and SIGINT stop the loop; main then shuts down cleanly.  Under
 * systemd, SIGTERM first hands everything to the descriptor store, so
 * that a restart loses nothing (reload.c).
 */
static void
server_stop_cb(evutil_socket_t sig, short events, void *arg)
{
	struct server	*srv = arg;

	(void)events;
	log_info("received signal %d, shutting down", (int)sig);
	if (sig == SIGTERM && !srv->handed_over && reload_fdstore_wanted())
		reload_fdstore(srv);
	systemd_stopping(srv->sd);
	event_base_loopexit(srv->base, NULL);
}

/*
 * SIGHUP: execute the binary again in place, handing over everything
 * (reload.c); if that fails, carry on as before.
 */
static void
server_hup_cb(evutil_socket_t sig, short events, void *arg)
{
	struct server	*srv = arg;

	(void)sig;
	(void)events;
	if (srv->handed_over)
		return;
	systemd_reloading(srv->sd);
	reload_exec(srv);
	log_warnx("reload failed; this daemon carries on as it was");
	systemd_status(srv->sd, "reload failed");
	systemd_ready(srv->sd, "reload failed; running as before");
}

/*
 * Keep the on-disk token ceiling well ahead of the tokens handed out, and
 * the lock table's token limit at the ceiling saved.  Returns 0, or the
 * -errno of a failed save, with token_msg saying what failed.
 */
static int
server_save_tokens(struct server *srv)
{
	int64_t		 next = locktab_next_token(srv->locktab), ceiling;
	const char	*file;
	int		 error;

	if (next + srv->token_reserve / 2 < srv->token_ceiling)
		return 0;
	if (next > TOKEN_MAX - srv->token_reserve) {
		/* Tokens stay exact in JSON, so below 2^53. */
		if (srv->token_ceiling == TOKEN_MAX)
			return 0;
		ceiling = TOKEN_MAX;
	} else
		ceiling = next + srv->token_reserve;
	if ((error = token_reserve(srv->lock_dirfd, ceiling, &file)) != 0) {
		snprintf(srv->token_msg, sizeof srv->token_msg,
		    "cannot save the token ceiling in %s/%s: %s",
		    srv->lock_dir, file, strerror(-error));
		return error;
	}
	srv->token_ceiling = ceiling;
	srv->host.metrics.token_ceiling = ceiling;
	locktab_set_token_limit(srv->locktab, ceiling);
	return 0;
}

/* Save the token ceiling if due; log once when saving fails or recovers. */
static int
server_reserve_tokens(struct server *srv)
{
	int	 error;

	if ((error = server_save_tokens(srv)) != 0) {
		if (srv->token_error == 0)
			log_warnx("%s; no grants past token %lld until it "
			    "can be saved", srv->token_msg,
			    (long long)srv->token_ceiling);
		srv->token_error = -error;
		srv->host.metrics.token_failing = 1;
		return error;
	}
	if (srv->token_error != 0)
		log_info("saved the token ceiling %s/%s again; granting "
		    "tokens up to %lld", srv->lock_dir, TOKEN_FILE,
		    (long long)srv->token_ceiling);
	srv->token_error = 0;
	srv->host.metrics.token_failing = 0;
	return 0;
}

/*
 * Why an acquire found no token left under the saved ceiling.  With no
 * failed save behind it the reserve merely ran out between two ticks:
 * save a new ceiling at once, so the next acquire succeeds.
 */
static const char *
server_tokens_exhausted(void *arg)
{
	struct server	*srv = arg;

	if (srv->token_error == 0 && server_reserve_tokens(srv) == 0)
		return "the fencing tokens reserved on disk ran out; "
		    "try again";
	return srv->token_msg;
}

/*
 * Whether the lock dir we hold open was removed or replaced: unlinked,
 * or its path now names another directory or nothing.
 */
static int
server_lock_dir_gone(const struct server *srv)
{
	struct stat	 held, now;

	if (fstat(srv->lock_dirfd, &held) == -1 ||
	    (srv->nlink_known && held.st_nlink == 0))
		return 1;
	if (stat(srv->lock_dir, &now) == -1)
		return errno == ENOENT || errno == ENOTDIR;
	return now.st_dev != held.st_dev || now.st_ino != held.st_ino;
}

/*
 * Leave our token ceiling in the lock dir's path (creating the directory
 * if it is missing), so that the next daemon's tokens start above ours.
 */
static void
server_hand_over_tokens(struct server *srv)
{
	struct stat	 sb;
	int64_t		 ceiling = srv->token_ceiling, saved;
	char		 buf[128], parent[PATH_MAX];
	const char	*why = NULL, *file;
	int		 fd, claim, error;

	/* Make no directory where someone else could have put it. */
	server_parent_dir(srv->lock_dir, parent, sizeof parent);
	if ((why = path_untrusted(parent, 1, buf, sizeof buf)) != NULL) {
		log_warnx("not saving the token ceiling in %s: its parent "
		    "directory: %s", srv->lock_dir, why);
		return;
	}
	if (mkdir(srv->lock_dir, 0755) == -1 && errno != EEXIST) {
		log_warn("mkdir %s", srv->lock_dir);
		return;
	}
	fd = open(srv->lock_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC |
	    O_NOFOLLOW);
	if (fd == -1) {
		log_warn("open lock dir %s", srv->lock_dir);
		return;
	}
	if (fstat(fd, &sb) == -1 ||
	    (why = dir_untrusted(&sb, 0, buf, sizeof buf)) != NULL) {
		log_warnx("not saving the token ceiling in %s: %s",
		    srv->lock_dir, why != NULL ? why : strerror(errno));
		close(fd);
		return;
	}
	/* A daemon that serves it already keeps its own ceiling. */
	if ((claim = lock_dir_try_claim(fd)) < 0) {
		log_warnx("not saving the token ceiling in %s: another locksd "
		    "uses it", srv->lock_dir);
		close(fd);
		return;
	}
	/* Never lower a ceiling someone saved there already. */
	if (token_read_ceiling(fd, &saved) == 0 && saved > ceiling)
		ceiling = saved;
	if ((error = token_reserve(fd, ceiling, &file)) != 0)
		log_warnx("cannot save the token ceiling in %s/%s: %s",
		    srv->lock_dir, file, strerror(-error));
	close(claim);
	close(fd);
}

/*
 * The lock dir is gone: every lock file we hold is one no other program
 * finds any more.  Stop, with a non-zero exit, so that a supervisor
 * restarts the daemon on the directory that is there now.
 */
static void
server_lock_dir_lost(struct server *srv)
{
	if (srv->failed)
		return;
	log_warnx("the lock dir %s was removed or replaced; exiting so that "
	    "a restart uses the directory there now", srv->lock_dir);
	server_hand_over_tokens(srv);
	srv->failed = 1;
	systemd_stopping(srv->sd);
	event_base_loopexit(srv->base, NULL);
}

/* An acquire found no lock file to open: is the whole lock dir gone? */
static void
server_lock_file_missing(void *arg)
{
	struct server	*srv = arg;

	if (server_lock_dir_gone(srv))
		server_lock_dir_lost(srv);
}

/* Whether the daemon stopped for a failure, and must exit non-zero. */
int
server_failed(const struct server *srv)
{
	return srv->failed;
}

/* A one-line summary for systemd's STATUS=. */
static void
server_status(const struct server *srv, char *buf, size_t size)
{
	snprintf(buf, size, "%zu connections, %zu locks held, %zu waiters",
	    srv->host.nsessions, locktab_nheld(srv->locktab),
	    locktab_nwaiting(srv->locktab));
}

/* Once a second: housekeeping that need not be immediate. */
static void
server_tick_cb(evutil_socket_t fd, short events, void *arg)
{
	struct server	*srv = arg;
	char		 status[128];

	(void)fd;
	(void)events;
	if (server_lock_dir_gone(srv)) {
		server_lock_dir_lost(srv);
		return;
	}
	server_reserve_tokens(srv);
	locktab_expire(srv->locktab);
	locktab_contended_tick(srv->locktab);
	metrics_file_tick(srv->metrics_file, &srv->host);
	server_status(srv, status, sizeof status);
	systemd_status(srv->sd, status);
}

static void
server_signals(struct server *srv)
{
	signal(SIGPIPE, SIG_IGN);
	srv->sigterm_ev = evsignal_new(srv->base, SIGTERM, server_stop_cb, srv);
	srv->sigint_ev = evsignal_new(srv->base, SIGINT, server_stop_cb, srv);
	srv->sighup_ev = evsignal_new(srv->base, SIGHUP, server_hup_cb, srv);
	if (srv->sigterm_ev == NULL || srv->sigint_ev == NULL ||
	    srv->sighup_ev == NULL)
		fatalx("cannot set up signals");
	evsignal_add(srv->sigterm_ev, NULL);
	evsignal_add(srv->sigint_ev, NULL);
	evsignal_add(srv->sighup_ev, NULL);
}

static void
server_timers(struct server *srv)
{
	struct timeval	 second = { 1, 0 };

	srv->tick_ev = event_new(srv->base, -1, EV_PERSIST, server_tick_cb,
	    srv);
	srv->resume_ev = evtimer_new(srv->base, server_resume_cb, srv);
	if (srv->tick_ev == NULL || srv->resume_ev == NULL)
		fatalx("cannot set up timers");
	evtimer_add(srv->tick_ev, &second);
}

/* Mark a descriptor a reload kept close-on-exec again; -1 if it is bad. */
static int
fd_keep(int fd)
{
	int	 flags;

	if (fd < 0 || (flags = fcntl(fd, F_GETFD)) == -1)
		return -1;
	return fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
}

/* Accept on one listening socket, which the server owns from then on. */
static void
server_add_listener(struct server *srv, int fd)
{
	struct evconnlistener	*l;

	fd_keep(fd);	/* a reload's exec cleared it, for the handover */
	l = evconnlistener_new(srv->base, server_accept_cb, srv,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
	if (l == NULL)
		fatalx("cannot listen on fd %d", fd);
	evconnlistener_set_error_cb(l, server_accept_error_cb);
	srv->listeners[srv->nlisteners++] = l;
}

/* Whether fd is the same socket as one of n others (systemd's, again). */
static int
socket_among(int fd, const int *fds, size_t n)
{
	struct stat	 a, b;
	size_t		 i;

	if (fstat(fd, &a) == -1)
		return 1;
	for (i = 0; i < n; i++) {
		if (fstat(fds[i], &b) == 0 && a.st_dev == b.st_dev &&
		    a.st_ino == b.st_ino)
			return 1;
	}
	return 0;
}

/*
 * A reload's listening sockets, beside any systemd passed anew (the
 * socket unit's, which a restart gets again): each socket once.
 */
static void
server_listen_kept(struct server *srv, const struct server_config *config)
{
	struct snap		*snap = config->restore;
	size_t			 i, n = config->nlisten_fds + snap->nlisteners;
	int			 fd;

	if ((srv->listeners = calloc(n, sizeof *srv->listeners)) == NULL)
		fatal("calloc");
	for (i = 0; i < config->nlisten_fds; i++)
		server_add_listener(srv, config->listen_fds[i]);
	for (i = 0; i < snap->nlisteners; i++) {
		if ((fd = snap->listeners[i]) < 0)
			continue;
		if (socket_among(fd, config->listen_fds, config->nlisten_fds) ||
		    sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) <= 0) {
			close(fd);
			continue;
		}
		server_add_listener(srv, fd);
	}
	for (i = 0; i < snap->nlisteners; i++)
		snap->listeners[i] = -1;	/* the listeners' now */
	srv->own_socket = snap->own_socket && config->nlisten_fds == 0;
	if (srv->nlisteners == 0)
		fatalx("the reload kept no listening socket");
}

/* Listen on the sockets systemd passed us, or else bind our own. */
static void
server_listen(struct server *srv, const struct server_config *config)
{
	size_t	 i, n = config->nlisten_fds;

	if (config->restore != NULL && config->restore->nlisteners > 0) {
		server_listen_kept(srv, config);
		return;
	}
	/* No socket at all: the fuzzer hands in connections itself. */
	if (config->socket_path == NULL && n == 0)
		return;
	srv->own_socket = n == 0;
	if (srv->own_socket)
		n = 1;
	if ((srv->listeners = calloc(n, sizeof *srv->listeners)) == NULL)
		fatal("calloc");
	for (i = 0; i < n; i++)
		server_add_listener(srv, srv->own_socket ?
		    socket_listen(srv->socket_path) : config->listen_fds[i]);
}

/* The lock dir a reload kept open, if it still is one; else open it. */
static int
server_kept_dir(const struct snap *snap, const char *path)
{
	struct stat	 sb;

	if (snap == NULL || fd_keep(snap->lock_dirfd) == -1 ||
	    fstat(snap->lock_dirfd, &sb) == -1 || !S_ISDIR(sb.st_mode)) {
		if (snap != NULL && snap->lock_dirfd >= 0)
			close(snap->lock_dirfd);
		return lock_dir_open(path);
	}
	return snap->lock_dirfd;
}

/*
 * The lock dir's claim a reload kept, its flock still held by the same
 * open file description; our pid goes into it.  Else claim it anew.
 */
static int
server_kept_claim(const struct snap *snap, int dirfd, const char *path)
{
	char	 buf[32];
	int	 len;

	if (snap == NULL || fd_keep(snap->claim_fd) == -1)
		return lock_dir_claim(dirfd, path);
	len = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
	if (ftruncate(snap->claim_fd, 0) == -1 ||
	    pwrite(snap->claim_fd, buf, (size_t)len, 0) != len)
		log_warn("cannot write the pid into %s/%s", path, CLAIM_FILE);
	return snap->claim_fd;
}

/*
 * With --metrics-file, write it once now: a path it cannot be written to
 * stops a plain start, with the path named.  A reload or restart, which
 * holds clients' locks, only logs it and goes on; so do later failures.
 */
static void
server_metrics_file(struct server *srv, const struct server_config *config)
{
	char	 err[PATH_MAX + 128];

	if (config->metrics_file == NULL)
		return;
	if ((srv->metrics_file = metrics_file_new(config->metrics_file,
	    config->metrics_interval, err, sizeof err)) == NULL) {
		if (config->restore == NULL)
			fatalx("%s", err);
		log_warnx("%s; not writing it", err);
		return;
	}
	if (metrics_file_write(srv->metrics_file, &srv->host, err,
	    sizeof err) != 0 && config->restore == NULL)
		fatalx("%s", err);
}

/* Set up the lock table, the socket, signals and timers. */
struct server *
server_new(struct event_base *base, const struct server_config *config)
{
	struct server	*srv;
	struct stat	 sb;
	char		 status[128];
	int64_t		 first_token;
	int		 error;

	if ((srv = calloc(1, sizeof *srv)) == NULL)
		fatal("calloc");
	srv->base = base;
	srv->max_clients = config->max_clients;
	srv->max_clients_per_uid = config->max_clients_per_uid;
	srv->access = config->access;
	srv->token_reserve = config->token_reserve > 0 ?
	    config->token_reserve : TOKEN_RESERVE;
	if ((srv->lock_dir = strdup(config->lock_dir)) == NULL)
		fatal("strdup");
	srv->lock_dirfd = server_kept_dir(config->restore, config->lock_dir);
	srv->claim_fd = server_kept_claim(config->restore, srv->lock_dirfd,
	    config->lock_dir);
	if (config->restore != NULL)
		config->restore->lock_dirfd = config->restore->claim_fd = -1;
	/* A removed directory has no links, where the fs counts them. */
	srv->nlink_known = fstat(srv->lock_dirfd, &sb) == 0 && sb.st_nlink > 0;
	if ((error = token_seed(srv->lock_dirfd, clock_realtime(),
	    &first_token)) != 0)
		fatalx("cannot read the token ceiling %s/%s: %s%s",
		    config->lock_dir, TOKEN_FILE, strerror(-error),
		    error == -EINVAL ? " (it must hold one number below "
		    "2^53; tokens after it would be guesswork)" : "");
	if ((srv->store = store_file_new(base, srv->lock_dirfd,
	    srv->lock_dir, first_token)) == NULL)
		fatal("store_file_new");
	srv->locktab = locktab_new(store_file_base(srv->store),
	    session_granted, session_failed, clock_realtime);
	if (srv->locktab == NULL)
		fatal("locktab_new");
	locktab_set_converted_cb(srv->locktab, session_converted);
	locktab_set_contended(srv->locktab, session_contended,
	    clock_monotonic);
	if (config->max_lock_files > 0 && (error = store_file_set_max_files(
	    srv->store, config->max_lock_files)) != 0) {
		errno = -error;
		fatal("cannot count the files of the lock dir %s",
		    config->lock_dir);
	}
	/* No grant before a ceiling above it is on disk. */
	locktab_set_token_limit(srv->locktab, 0);
	if (server_save_tokens(srv) != 0)
		fatalx("%s", srv->token_msg);
	if ((srv->outside = outside_cache_new()) == NULL)
		fatal("outside_cache_new");
	server_cluster_init(srv, config);
	server_host_init(srv, config);
	srv->socket_path = strdup(config->socket_path != NULL ?
	    config->socket_path : "(no socket)");
	if (srv->socket_path == NULL)
		fatal("strdup");
	server_listen(srv, config);
	if (config->restore != NULL)
		server_restore(srv, config->restore);
	server_metrics_file(srv, config);
	server_signals(srv);
	srv->sd = systemd_new(base);
	server_timers(srv);
	log_info("listening on %s%s, locks in %s", srv->socket_path,
	    srv->own_socket || srv->nlisteners == 0 ? "" :
	    " (socket activation)", config->lock_dir);
	server_status(srv, status, sizeof status);
	systemd_ready(srv->sd, status);
	return srv;
}

/*
 * Close every connection, release every lock, and remove the socket if we
 * bound it (an inherited socket belongs to whoever passed it).
 */
void
server_free(struct server *srv)
{
	size_t	 i;

	if (srv == NULL)
		return;
	session_free_all(&srv->host);
	for (i = 0; i < srv->nlisteners; i++)
		evconnlistener_free(srv->listeners[i]);
	free(srv->listeners);
	store_etcd_shutdown(srv->etcd);
	if (srv->own_socket && !srv->handed_over &&
	    unlink(srv->socket_path) == -1)
		log_warn("unlink %s", srv->socket_path);
	locktab_free(srv->locktab);
	store_file_free(srv->store);
	locktab_free(srv->cluster);
	store_etcd_free(srv->etcd);
	listing_free(&srv->listing);
	outside_cache_free(srv->outside);
	close(srv->claim_fd);
	close(srv->lock_dirfd);
	tdestroy(srv->uid_counts, free);
	free(srv->lock_dir);
	event_free(srv->sigterm_ev);
	event_free(srv->sigint_ev);
	event_free(srv->sighup_ev);
	event_free(srv->tick_ev);
	event_free(srv->resume_ev);
	systemd_free(srv->sd);
	metrics_file_free(srv->metrics_file);
	free(srv->socket_path);
	free(srv);
}

/* The event loop connections register with. */
struct event_base *
server_base(struct server *srv)
{
	return srv->base;
}

/* The one lock table. */
struct locktab *
server_locktab(struct server *srv)
{
	return srv->locktab;
}

/* The sessions and what they share. */
struct session_host *
server_sessions(struct server *srv)
{
	return &srv->host;
}

/* How many sessions are open. */
size_t
server_nconns(const struct server *srv)
{
	return srv->host.nsessions;
}

/* Order uid_counts by uid. */
static int
uid_count_cmp(const void *a, const void *b)
{
	uid_t	 x = ((const struct uid_count *)a)->uid;
	uid_t	 y = ((const struct uid_count *)b)->uid;

	return x < y ? -1 : x > y;
}

/* The count of uid's connections, or NULL if it has none. */
static struct uid_count *
uid_count_find(struct server *srv, uid_t uid)
{
	struct uid_count	 key = { uid, 0 };
	void			*node;

	if ((node = tfind(&key, &srv->uid_counts, uid_count_cmp)) == NULL)
		return NULL;
	return *(struct uid_count **)node;
}

/* Read the peer's pid, uid and gid from the kernel, not from the client. */
static int
server_read_peer(int fd, struct peer *ret_peer)
{
	struct ucred	 cred;
	socklen_t	 len = sizeof cred;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == -1)
		return -1;
	ret_peer->pid = cred.pid;
	ret_peer->uid = cred.uid;
	ret_peer->gid = cred.gid;
	return 0;
}

/*
 * Whether a new peer may connect: it must be allowed, and the daemon
 * under --max-clients and the peer's uid under --max-clients-per-uid.
 * Returns PROTO_OK, or the error and why in ret_msg.
 */
static enum proto_error
server_may_admit(struct server *srv, int fd, const struct peer *peer,
    const char **ret_msg)
{
	struct uid_count	*count;

	uint64_t		*refused = srv->host.metrics.refused;

	if (!access_allows(srv->access, fd, peer)) {
		refused[METRICS_REFUSED_NOT_ALLOWED]++;
		*ret_msg = "this user may not use the lock broker";
		return PROTO_E_PERMISSION_DENIED;
	}
	if (srv->host.nsessions >= srv->max_clients) {
		refused[METRICS_REFUSED_MAX_CLIENTS]++;
		*ret_msg = "too many clients are connected";
		return PROTO_E_LIMIT;
	}
	if (srv->max_clients_per_uid > 0 &&
	    (count = uid_count_find(srv, peer->uid)) != NULL &&
	    count->n >= srv->max_clients_per_uid) {
		refused[METRICS_REFUSED_PER_UID]++;
		*ret_msg = "too many connections from this user";
		return PROTO_E_LIMIT;
	}
	return PROTO_OK;
}

/*
 * Send a refused peer its one error line and close.  A new socket's
 * buffer takes a short line whole, so one writev(2) is enough.
 */
static void
server_refuse(int fd, enum proto_error error, const char *msg)
{
	struct json_object	*reply = proto_reply_error(NULL, error, msg);
	struct iovec		 iov[2];
	size_t			 len;

	iov[0].iov_base = (void *)proto_serialize(reply, &len);
	iov[0].iov_len = len;
	iov[1].iov_base = "\n";
	iov[1].iov_len = 1;
	if (writev(fd, iov, 2) == -1)
		log_debug("write to a refused peer: %s", strerror(errno));
	json_object_put(reply);
	close(fd);
}

/* Count a new session under its peer's uid; 0 if out of memory. */
static int
server_count_uid(struct server *srv, uid_t uid)
{
	struct uid_count	*count;
	void			*node;

	if ((count = uid_count_find(srv, uid)) == NULL) {
		/* Out of memory: this session goes uncounted. */
		if ((count = calloc(1, sizeof *count)) == NULL)
			return 0;
		count->uid = uid;
		node = tsearch(count, &srv->uid_counts, uid_count_cmp);
		if (node == NULL) {
			free(count);
			return 0;
		}
	}
	count->n++;
	return 1;
}

/*
 * Read an accepted socket's peer and decide; an admitted peer gets a
 * session, a refused one an error line.
 */
static void
server_accept_peer(struct server *srv, int fd)
{
	struct peer		 peer;
	enum proto_error	 error;
	const char		*msg;
	int			 counted;

	if (server_read_peer(fd, &peer) == -1) {
		log_warn("SO_PEERCRED");
		close(fd);
		return;
	}
	if ((error = server_may_admit(srv, fd, &peer, &msg)) != PROTO_OK) {
		log_warnx("refused connection from uid %ld pid %ld: %s",
		    (long)peer.uid, (long)peer.pid, msg);
		server_refuse(fd, error, msg);
		return;
	}
	counted = server_count_uid(srv, peer.uid);
	if (session_new(&srv->host, fd, &peer, counted) == NULL) {
		srv->host.metrics.refused[METRICS_REFUSED_NO_MEMORY]++;
		server_session_closed(&peer, counted, srv);
		return;
	}
	srv->host.metrics.accepted++;
	log_debug("connection from pid %ld uid %ld", (long)peer.pid,
	    (long)peer.uid);
}

/*
 * A session ended: uncount it, and accept again if descriptors ran out.
 * counted says whether server_count_uid took it.
 */
static void
server_session_closed(const struct peer *peer, int counted, void *arg)
{
	struct server		*srv = arg;
	struct uid_count	*count;

	if (counted && (count = uid_count_find(srv, peer->uid)) != NULL &&
	    --count->n == 0) {
		tdelete(count, &srv->uid_counts, uid_count_cmp);
		free(count);
	}
	/* A restore closes sessions before the timers exist. */
	if (srv->resume_ev != NULL && evtimer_pending(srv->resume_ev, NULL)) {
		evtimer_del(srv->resume_ev);
		server_listeners_enable(srv);
	}
}

/* With --etcd: the etcd store and the cluster lock table over it. */
static void
server_cluster_init(struct server *srv, const struct server_config *config)
{
	struct store_etcd_hooks	 hooks = {
		session_cluster_describe, session_cluster_queued,
		session_cluster_lost, &srv->host
	};
	char			 err[256];

	if (config->etcd == NULL)
		return;
	if ((srv->etcd = store_etcd_new(srv->base, config->etcd, err,
	    sizeof err)) == NULL)
		fatalx("%s", err);
	store_etcd_set_hooks(srv->etcd, &hooks);
	srv->cluster = locktab_new(store_etcd_base(srv->etcd),
	    session_granted, session_failed, clock_realtime);
	if (srv->cluster == NULL)
		fatal("locktab_new");
	log_info("cluster locks on etcd %s under %s, node %s, lease ttl %d s",
	    config->etcd->endpoints, config->etcd->prefix, config->etcd->node,
	    config->etcd->ttl);
}

/* Fill in what every session shares, and the calls up to the server. */
static void
server_host_init(struct server *srv, const struct server_config *config)
{
	struct session_host	*host = &srv->host;

	listing_init(&srv->listing, srv->locktab, srv->outside,
	    srv->lock_dirfd);
	host->base = srv->base;
	host->locktab = srv->locktab;
	host->store = srv->store;
	host->cluster = srv->cluster;
	host->etcd = srv->etcd;
	host->listing = &srv->listing;
	host->max_locks_per_client = config->max_locks_per_client;
	host->max_lock_files = config->max_lock_files;
	host->output_high = config->output_high != 0 ? config->output_high :
	    OUTPUT_HIGH;
	host->started = clock_monotonic();
	TAILQ_INIT(&host->sessions);
	TAILQ_INIT(&host->groups);
	host->closed = server_session_closed;
	host->tokens_exhausted = server_tokens_exhausted;
	host->lock_file_missing = server_lock_file_missing;
	host->arg = srv;
}

/*
 * The next instance has everything: what this one does from now on must
 * not reach the descriptors it handed over (reload.c makes them
 * /dev/null), nor remove the socket the next one serves.
 */
void
server_handed_over(struct server *srv)
{
	srv->handed_over = 1;
}

/* A lock's holders, then its waiters, as a reload keeps them. */
static int
snapshot_lock(struct lock *lock, struct snap_lock *sl)
{
	struct lock_req	*req;
	uint32_t	 n = 0;
	dev_t		 dev;
	ino_t		 ino;

	sl->name = (char *)lock_name(lock);
	sl->fd = lock_fd(lock);
	sl->flock = (uint32_t)lock_file_taken(lock);
	lock_file_id(lock, &dev, &ino);
	sl->id.dev = dev;
	sl->id.ino = ino;
	for (req = lock_first_holder(lock); req != NULL;
	    req = lock_req_next(req))
		n++;
	sl->nholders = n;
	for (req = lock_first_waiter(lock); req != NULL;
	    req = lock_req_next(req))
		n++;
	if (n > 0 && (sl->reqs = calloc(n, sizeof *sl->reqs)) == NULL)
		return -1;
	n = 0;
	for (req = lock_first_holder(lock); req != NULL;
	    req = lock_req_next(req))
		session_req_ref(req, &sl->reqs[n++]);
	for (req = lock_first_waiter(lock); req != NULL;
	    req = lock_req_next(req))
		session_req_ref(req, &sl->reqs[n++]);
	sl->nreqs = n;
	return 0;
}

/* Every lock in use; idle ones are closed first, as they hold nothing. */
static int
snapshot_locks(struct server *srv, struct snap *snap)
{
	struct lock	*lock;
	uint32_t	 n = 0;

	locktab_close_idle(srv->locktab);
	for (lock = locktab_first(srv->locktab); lock != NULL;
	    lock = locktab_next(lock))
		n++;
	if (n == 0)
		return 0;
	if ((snap->locks = calloc(n, sizeof *snap->locks)) == NULL)
		return -1;
	for (lock = locktab_first(srv->locktab); lock != NULL;
	    lock = locktab_next(lock)) {
		snap->locks[snap->nlocks].fd = -1;
		if (snapshot_lock(lock, &snap->locks[snap->nlocks++]) == -1)
			return -1;
	}
	return 0;
}

/*
 * What a reload keeps of the whole daemon, as plain data borrowing from
 * it (state_free frees the arrays); -1 if out of memory.
 */
int
server_snapshot(struct server *srv, struct snap *snap)
{
	size_t	 i;

	session_convert_drop_all(&srv->host);
	/* Cluster locks live on this process's lease: they cannot go along. */
	if (srv->etcd != NULL) {
		session_cluster_drop_all(&srv->host);
		store_etcd_shutdown(srv->etcd);
	}
	memset(snap, 0, sizeof *snap);
	snap->version = STATE_VERSION;
	snap->pid = getpid();
	memcpy(snap->former, srv->former, sizeof snap->former);
	snap->nformer = (uint32_t)srv->nformer;
	snap->claim_fd = srv->claim_fd;
	snap->lock_dirfd = srv->lock_dirfd;
	snap->own_socket = srv->own_socket;
	snap->started = srv->host.started;
	if (srv->nlisteners > 0 && (snap->listeners = calloc(srv->nlisteners,
	    sizeof *snap->listeners)) == NULL)
		return -1;
	for (i = 0; i < srv->nlisteners; i++)
		snap->listeners[snap->nlisteners++] =
		    evconnlistener_get_fd(srv->listeners[i]);
	if (session_export_all(&srv->host, snap) == -1 ||
	    snapshot_locks(srv, snap) == -1)
		return -1;
	snap->nhandoffs = (uint32_t)listing_handoffs_export(&srv->listing,
	    &snap->handoffs);
	return 0;
}

/* Close a descriptor of the state that nothing took. */
static void
restore_close_fd(int *fd, void *arg)
{
	(void)arg;
	close(*fd);
	*fd = -1;
}

/*
 * The daemons a restart chain came through, newest last, at most
 * SNAP_FORMER_MAX: their flocks are the daemon's own.
 */
static void
restore_former(struct server *srv, const struct snap *snap)
{
	size_t	 i, n = 0;

	for (i = 0; i < snap->nformer && i < SNAP_FORMER_MAX; i++)
		srv->former[n++] = snap->former[i];
	if (snap->pid != getpid() && snap->pid > 0) {
		if (n == SNAP_FORMER_MAX) {
			memmove(srv->former, srv->former + 1,
			    (n - 1) * sizeof *srv->former);
			n--;
		}
		srv->former[n++] = snap->pid;
	}
	srv->nformer = n;
	outside_set_former(srv->outside, srv->former, n);
}

/* Mark a descriptor of the state close-on-exec again. */
static void
restore_cloexec_fd(int *fd, void *arg)
{
	(void)arg;
	fd_keep(*fd);
}

/* Whether a lock name from the state is one the table could have. */
static int
restore_name_valid(const char *name)
{
	return name != NULL && (name[0] == '/' ? strlen(name) <=
	    PROTO_MAX_NAME : proto_name_valid(name, strlen(name)));
}

/*
 * Put back one lock and its requests, each acquire once, and only into
 * the session it was in.  Counts what it placed in placed[session].
 */
static void
restore_lock(struct server *srv, struct snap *snap, struct snap_lock *sl,
    struct session **sessions, uint32_t *placed)
{
	struct lock_store_kept	 kept = { sl->fd, (int)sl->flock };
	struct snap_session	*ss;
	struct snap_req		*r;
	struct lock		*lock;
	uint32_t		 i;
	int			 rc;

	if (sl->fd < 0 || !restore_name_valid(sl->name))
		return;
	if ((rc = locktab_restore_lock(srv->locktab, sl->name, &kept,
	    &lock)) != 0) {
		log_warnx("cannot restore the lock %s: %s", sl->name,
		    rc < 0 && rc > -4096 ? strerror(-rc) : "past a limit");
		return;
	}
	fd_keep(sl->fd);
	sl->fd = -1;		/* the store's now */
	for (i = 0; i < sl->nreqs; i++) {
		r = &sl->reqs[i];
		if (r->session >= snap->nsessions ||
		    sessions[r->session] == NULL)
			continue;
		ss = &snap->sessions[r->session];
		if (r->acquire >= ss->nacquires ||
		    ss->acquires[r->acquire].target == NULL ||
		    ss->acquires[r->acquire].held != (i < sl->nholders))
			continue;
		if (session_restore_acquire(sessions[r->session],
		    &ss->acquires[r->acquire], lock) == 0) {
			placed[r->session]++;
			/* Placed once: a second reference finds no target. */
			free(ss->acquires[r->acquire].target);
			ss->acquires[r->acquire].target = NULL;
		}
	}
}

/* The connections, each with none of its acquires yet. */
static void
restore_sessions(struct server *srv, struct snap *snap,
    struct session **sessions)
{
	struct snap_session	*ss;
	uint32_t		 i;
	int			 counted;

	for (i = 0; i < snap->nsessions; i++) {
		ss = &snap->sessions[i];
		if (ss->fd < 0 || fd_keep(ss->fd) == -1)
			continue;
		counted = server_count_uid(srv, ss->peer.uid);
		sessions[i] = session_restore(&srv->host, ss, counted);
		ss->fd = -1;
		memset(ss->groups, 0xff, sizeof ss->groups);	/* the conn's */
		ss->ngroups = 0;
		if (sessions[i] == NULL)
			server_session_closed(&ss->peer, counted, srv);
	}
}

/*
 * A session missing an acquire it had would tell its client nothing of
 * a lock lost: it is closed instead, as a crash would, so that its
 * client learns it.
 */
static size_t
restore_drop_incomplete(struct snap *snap, struct session **sessions,
    const uint32_t *placed)
{
	uint32_t	 i;
	size_t		 dropped = 0;

	for (i = 0; i < snap->nsessions; i++) {
		if (sessions[i] == NULL ||
		    placed[i] == snap->sessions[i].nacquires)
			continue;
		session_free(sessions[i]);
		sessions[i] = NULL;
		dropped++;
	}
	return dropped;
}

/*
 * Restore what a reload kept: connections, locks with their holders and
 * waiters in order, handed-over locks.  What cannot be restored is
 * released as a crash would release it; the rest carries on.
 */
static void
server_restore(struct server *srv, struct snap *snap)
{
	struct session	**sessions;
	uint32_t	 *placed, i;
	size_t		  dropped;
	double		  began = clock_monotonic();

	state_each_fd(snap, restore_cloexec_fd, NULL);
	restore_former(srv, snap);
	if (snap->started > 0)
		srv->host.started = snap->started;
	sessions = calloc(snap->nsessions + 1, sizeof *sessions);
	placed = calloc(snap->nsessions + 1, sizeof *placed);
	if (sessions == NULL || placed == NULL)
		fatal("calloc");
	restore_sessions(srv, snap, sessions);
	for (i = 0; i < snap->nlocks; i++)
		restore_lock(srv, snap, &snap->locks[i], sessions, placed);
	dropped = restore_drop_incomplete(snap, sessions, placed);
	for (i = 0; i < snap->nhandoffs; i++)
		listing_handoff_restore(&srv->listing, &snap->handoffs[i]);
	locktab_restore_done(srv->locktab);
	state_each_fd(snap, restore_close_fd, NULL);
	log_info("restored %zu connections and %zu locks held, %zu waiting, "
	    "from pid %ld, in %.1f ms%s", srv->host.nsessions,
	    locktab_nheld(srv->locktab), locktab_nwaiting(srv->locktab),
	    (long)snap->pid, (clock_monotonic() - began) * 1e3, dropped > 0 ?
	    "; closed the connections whose locks were not all kept" : "");
	if (dropped > 0)
		log_warnx("%zu connections lost a lock in the handover and "
		    "were closed", dropped);
	free(sessions);
	free(placed);
}
