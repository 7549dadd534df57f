/*
 * liblocks: a client for locksd, the named-lock broker.
 *
 * Every call is blocking.  A locks_conn is not thread-safe: use one
 * connection per thread (or guard one with your own mutex).  Distinct
 * connections are independent and may be used from different threads.
 *
 * Locks live as long as the connection: locks_close() (or the death of
 * the process) releases everything the connection held or awaited.
 *
 * Functions that can fail return LOCKS_OK (0) or a negative locks_error.
 * Output parameters (ret_*) are untouched on failure.  Destructors
 * accept NULL.
 */
#ifndef LOCKS_H
#define LOCKS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library is built with hidden visibility; only this API is exported. */
#pragma GCC visibility push(default)

/*
 * Errors.  Those from LOCKS_E_BAD_JSON to LOCKS_E_DEADLOCK map one-to-one
 * onto the protocol's error codes; the rest are the library's own.
 */
enum locks_error {
	LOCKS_OK = 0,
	LOCKS_E_BAD_JSON = -1,		/* "bad_json" */
	LOCKS_E_BAD_REQUEST = -2,	/* "bad_request" */
	LOCKS_E_UNKNOWN_OP = -3,	/* "unknown_op" */
	LOCKS_E_INVALID_NAME = -4,	/* "invalid_name" */
	LOCKS_E_ALREADY_HELD = -5,	/* "already_held" */
	LOCKS_E_NOT_HELD = -6,		/* "not_held" */
	LOCKS_E_TIMEOUT = -7,		/* "timeout" */
	LOCKS_E_CANCELLED = -8,		/* "cancelled" */
	LOCKS_E_TOO_LARGE = -9,		/* "too_large" */
	LOCKS_E_LIMIT = -10,		/* "limit" */
	LOCKS_E_PERMISSION_DENIED = -11, /* "permission_denied" */
	LOCKS_E_INTERNAL = -12,		/* "internal" */
	LOCKS_E_UNSUPPORTED = -13,	/* "unsupported" */
	LOCKS_E_UNAVAILABLE = -14,	/* "unavailable": etcd unreachable */
	LOCKS_E_DEADLOCK = -15,		/* "deadlock": it would wait forever */
	LOCKS_E_CONNECT = -100,		/* could not reach the daemon */
	LOCKS_E_LOST = -101,		/* the connection broke */
	LOCKS_E_PROTOCOL = -102,	/* the daemon's reply made no sense */
	LOCKS_E_NOMEM = -103,		/* out of memory */
	LOCKS_E_INVAL = -104,		/* bad argument to the library */
	LOCKS_E_UNTRUSTED = -105,	/* the default socket is not safe */
	LOCKS_E_VERSION = -106,		/* the daemon speaks another protocol */
	LOCKS_E_OPEN = -107		/* cannot open the path; errno says why */
};

enum locks_mode {
	LOCKS_EXCLUSIVE = 0,
	LOCKS_SHARED = 1
};

/* The daemon's limits, which the library checks before asking. */
#define LOCKS_MAX_NAME		200	/* bytes in a lock name */
#define LOCKS_MAX_OWNER		256	/* bytes in an owner or client label */
#define LOCKS_MAX_SECONDS	1e9	/* largest timeout or notify_after */

typedef struct locks_conn locks_conn;
typedef struct locks_lock locks_lock;
typedef struct locks_holder locks_holder;
typedef struct locks_list locks_list;
typedef struct locks_status locks_status;
typedef struct locks_metrics locks_metrics;

/* The protocol code of an error ("timeout"), or the library's own name. */
const char	*locks_error_code(int error);
/* A one-line description of an error, for people. */
const char	*locks_strerror(int error);
/*
 * The daemon's (or library's) message for this connection's last error;
 * for NULL, the calling thread's last message (as after a failed
 * locks_connect).
 */
const char	*locks_last_message(const locks_conn *conn);
/* The name of a mode as the protocol writes it ("shared"), or NULL. */
const char	*locks_mode_name(enum locks_mode mode);

/*
 * The socket a daemon started by the caller listens on by default:
 * $LOCKS_SOCKET, else /run/locksd/locksd.sock (the system socket) as
 * root, else $XDG_RUNTIME_DIR/locksd/locksd.sock, else
 * /tmp/locksd-$UID/locksd.sock (the per-user socket).  Returns the length
 * written (as snprintf does).  $LOCKS_SYSTEM_SOCKET, an absolute path,
 * moves the system socket; it is meant for tests, which must not touch
 * the real /run, and for a system broker installed elsewhere.
 *
 * locks_connect(NULL, ...) uses $LOCKS_SOCKET, or the system socket as
 * root, unchecked: the caller's own choice.  A caller other than root
 * tries the system socket when a broker answers there, then the per-user
 * one; when neither answers it fails with LOCKS_E_CONNECT, and
 * locks_last_message(NULL) names both and how to start a broker.  A
 * system socket that answers but fails its checks is refused, not passed
 * over, and so is a system broker that refuses the caller, and a system
 * socket that is there but does not answer: the per-user broker is tried
 * only when there is no system socket at all.
 *
 * The checks come before anything is said.  The socket's directory must
 * be a real directory (not a symbolic link) writable by neither its group
 * nor others (a sticky bit is no excuse).  A per-user socket's directory
 * must be owned by the caller's euid, and the daemon on it (SO_PEERCRED)
 * must run as the caller's euid or as root.  The daemon on the system
 * socket must run as root or as the owner of its directory (the locksd
 * user), who could replace the socket anyway.  Otherwise locks_connect
 * fails with LOCKS_E_UNTRUSTED, and locks_last_message(NULL) names the
 * directory or socket and says why.
 */
int		 locks_default_socket(char *buf, size_t size);

/*
 * Return 1 if name is a valid lock name: 1 to LOCKS_MAX_NAME bytes of
 * [A-Za-z0-9._:@+-], not starting with '.'; 0 otherwise.
 */
int		 locks_name_valid(const char *name);

/*
 * Connect to the daemon at path (NULL: the default, checked as said at
 * locks_default_socket) and say hello with the label client (NULL: the
 * program's name; at most LOCKS_MAX_OWNER bytes).  A daemon that
 * speaks another protocol version than this library is refused with
 * LOCKS_E_VERSION, and locks_last_message(NULL) names both versions.
 */
int		 locks_connect(const char *path, const char *client,
		    locks_conn **ret_conn);
void		 locks_close(locks_conn *conn);
/* The socket path this connection was made to. */
const char	*locks_socket_path(const locks_conn *conn);

/*
 * Called once if an acquire is still waiting notify_after seconds on,
 * from inside locks_acquire.  lock is the lock waited for, with the
 * holders in the way (its waiters are not filled in); it and everything
 * in it are valid only during the call.  position is the acquire's place
 * in the queue, counting from 1 (0 if the daemon did not say).  arg is
 * the arg of the acquire's options.  The callback must not make requests
 * on the connection that is waiting: they fail with LOCKS_E_INVAL, and
 * locks_check and locks_held there answer without reading (the waiting
 * acquire reads for them).
 */
typedef void (*locks_blocking_cb)(const locks_lock *lock, int position,
    void *arg);

/*
 * Called for a lock this connection holds, if it asked (on_contended in
 * its options), when a request queues behind it, and again as that
 * queue changes, at most once a second: name is the lock as acquired,
 * waiters how many wait, first the first of them (valid only during the
 * call).  The daemon pushes these between requests: they are read, and
 * the callback called, inside any later call on the connection, and by
 * locks_check (watch locks_fd for POLLIN to call it in time).  arg is the
 * arg of the acquire's options.  The callback must not make requests on
 * the connection (they fail with LOCKS_E_INVAL), but it may note what to
 * do after: release the lock once locks_check returns, say.
 */
typedef void (*locks_contended_cb)(const char *name, int waiters,
    const locks_holder *first, void *arg);

/*
 * Where a lock lives: this machine's locksd (the default), or the etcd
 * cluster of a locksd started with --etcd, across every machine on it.
 */
enum locks_scope {
	LOCKS_LOCAL = 0,
	LOCKS_CLUSTER = 1
};

struct locks_acquire_opts {
	enum locks_mode	 mode;		/* LOCKS_EXCLUSIVE by default */
	double		 timeout;	/* < 0: forever; 0: try once */
	double		 notify_after;	/* seconds before on_blocking */
	const char	*owner;		/* free text, LOCKS_MAX_OWNER bytes */
	locks_blocking_cb on_blocking;	/* may be NULL */
	void		*arg;		/* passed to on_blocking, on_contended */
	enum locks_scope scope;		/* LOCKS_LOCAL by default */
	/* Local locks only: not cluster ones, nor the descriptor form. */
	locks_contended_cb on_contended; /* may be NULL: not told */
	/*
	 * Nonzero: if waiting would close a cycle of connections to this
	 * daemon waiting for each other (this connection holds what another
	 * waits for, which holds or awaits what this waits for, ...), fail
	 * with LOCKS_E_DEADLOCK at once instead, the message naming the
	 * cycle's pids and locks; of the cycle's waits that asked, the
	 * youngest fails, possibly an earlier wait of another connection.
	 * Every waiting acquire counts as its connection waiting.  Local
	 * locks only: not cluster ones, nor the descriptor form.
	 */
	int		 detect_deadlock;
};

#define LOCKS_ACQUIRE_OPTS_INIT { LOCKS_EXCLUSIVE, -1, 0, NULL, NULL, NULL, \
	LOCKS_LOCAL, NULL, 0 }

/*
 * Take a lock; opts may be NULL for an exclusive lock waited for forever.
 * On success *ret_token (may be NULL) is the fencing token.
 *
 * target is a lock name, or a path: anything containing '/'.  For a path
 * the library opens the file itself, as flock(1) does (read-only, created
 * 0666 if missing; a directory works too), and passes the descriptor to
 * the daemon with the request, so whoever can open a file can lock it.
 * The daemon keys every lock by its file, so a path to a lock file in the
 * lock dir and that file's name are one lock, FIFO with each other, and
 * so are two paths to one file.  A file system whose flock(2) cannot tell
 * the broker's clients apart (NFS, CIFS, ...) is refused with
 * LOCKS_E_UNSUPPORTED; so is anything but a regular file or a directory.
 * Release a path lock by the same target string.
 */
int		 locks_acquire(locks_conn *conn, const char *target,
		    const struct locks_acquire_opts *opts, int64_t *ret_token);
/*
 * The descriptor form, for flock(1)'s "locks run 9": queue for the file
 * that fd is open on, FIFO with every broker client of that file, and
 * once granted leave the flock on fd's own open file description, not on
 * the connection.  The lock then lasts as long as that description stays
 * open in some process (or until flock(fd, LOCK_UN)), exactly like a
 * flock(2) on fd; the connection holds nothing afterwards, and the daemon
 * shows the lock in list as held by this process's parent until it sees
 * the file unlocked.  fd must be open on a regular file or a directory.
 * An exclusive grant moves the flock with an unlock and a lock, and a
 * flock(2) waiting outside the broker may win that instant; the call then
 * waits again, within what is left of opts->timeout, as flock(1) would.
 */
int		 locks_acquire_fd(locks_conn *conn, int fd,
		    const struct locks_acquire_opts *opts, int64_t *ret_token);
/*
 * Release a lock this connection holds, or cancel its wait for it.  A
 * name held in both scopes is released locally; locks_release_scope says.
 */
int		 locks_release(locks_conn *conn, const char *target);
int		 locks_release_scope(locks_conn *conn, const char *target,
		    enum locks_scope scope);
/*
 * Convert a local lock this connection holds (a name or a path, as it was
 * acquired) to mode, atomically: the lock stays held all along, and no
 * process outside the broker gets in on the way.  A downgrade (exclusive
 * to shared) is at once, keeps the token, and lets the shared waiters at
 * the head of the queue in.  An upgrade holds shared while it waits for
 * the other holders to let go, ahead of every waiter, timeout seconds at
 * most (< 0: forever; 0: not at all, LOCKS_E_TIMEOUT), then holds
 * exclusive with a new, higher token.  On success *ret_token (may be
 * NULL) is the token held now.  LOCKS_E_DEADLOCK at once if another
 * holder's upgrade waits already (each would wait for the other; this
 * one keeps its shared hold); LOCKS_E_TIMEOUT leaves the shared hold as
 * it was; LOCKS_E_NOT_HELD if not held; LOCKS_E_UNSUPPORTED for a cluster
 * lock; LOCKS_E_CANCELLED if the upgrade lost the lock to an outside
 * flock (the daemon then holds nothing for it: locks_held is 0).
 */
int		 locks_convert(locks_conn *conn, const char *target,
		    enum locks_mode mode, double timeout, int64_t *ret_token);
/* Make a round trip, to learn that the daemon answers. */
int		 locks_ping(locks_conn *conn);

/*
 * Losing locksd.  If the daemon dies, the kernel drops every flock it held
 * and this connection's locks are gone.  locks_fd() is the connection's
 * socket (-1 for NULL): an event loop can watch it for readability
 * (POLLIN/POLLRDHUP) and then call locks_check().  The daemon may send
 * events between requests, so readable does not mean lost: locks_check()
 * reads and handles whatever is there without blocking, leaving the
 * socket quiet again, and returns LOCKS_OK, or LOCKS_E_LOST once the
 * connection is gone (LOCKS_E_INVAL for NULL).  Lines that came in the
 * same read as a reply wait in the library, not the socket, until the
 * next call.  locks_held() tells
 * whether a name taken on this connection is still held: granted, not
 * released, and the connection alive.
 */
/*
 * A cluster lock is also lost when locksd's etcd lease lapses: the daemon
 * sends a "lost" event, and locks_check() returns LOCKS_E_LOST once for
 * it (the connection and its other locks live on); locks_held() of that
 * name is 0 from then on.
 */
int		 locks_fd(const locks_conn *conn);
int		 locks_check(locks_conn *conn);
int		 locks_held(locks_conn *conn, const char *name);

/* One lock in a listing or a blocking notice: its name, holders, waiters. */
const char	*locks_lock_name(const locks_lock *lock);
size_t		 locks_lock_nholders(const locks_lock *lock);
/* Holder or waiter i, or NULL past the end. */
const locks_holder *locks_lock_holder(const locks_lock *lock, size_t i);
size_t		 locks_lock_nwaiters(const locks_lock *lock);
const locks_holder *locks_lock_waiter(const locks_lock *lock, size_t i);

/* One holder or waiter.  Strings are never NULL. */
int		 locks_holder_external(const locks_holder *h);
pid_t		 locks_holder_pid(const locks_holder *h);
/* An outside holder's uid is (uid_t)-1 when the daemon could not see it. */
uid_t		 locks_holder_uid(const locks_holder *h);
gid_t		 locks_holder_gid(const locks_holder *h);
const char	*locks_holder_client(const locks_holder *h);
const char	*locks_holder_owner(const locks_holder *h);
const char	*locks_holder_command(const locks_holder *h);
const char	*locks_holder_node(const locks_holder *h);	/* "" local */
enum locks_mode	 locks_holder_mode(const locks_holder *h);
double		 locks_holder_since(const locks_holder *h);
int64_t		 locks_holder_token(const locks_holder *h);	/* 0: waiter */

/* List the locks with holders or waiters; name NULL means all. */
int		 locks_list_get(locks_conn *conn, const char *name,
		    locks_list **ret_list);
/*
 * The same, with flags: LOCKS_LIST_ALL also lists files of the lock
 * directory held only by programs outside the broker, with no waiters.
 */
#define LOCKS_LIST_ALL	0x1
/* LOCKS_LIST_CLUSTER lists the cluster's locks, of every node, instead. */
#define LOCKS_LIST_CLUSTER	0x2
int		 locks_list_query(locks_conn *conn, const char *name,
		    int flags, locks_list **ret_list);
size_t		 locks_list_count(const locks_list *list);
/* Lock i of the list, or NULL past the end. */
const locks_lock *locks_list_lock(const locks_list *list, size_t i);
/* The daemon's reply, as one line of JSON. */
const char	*locks_list_json(const locks_list *list);
void		 locks_list_free(locks_list *list);

/* Ask the daemon for its version and counters. */
int		 locks_status_get(locks_conn *conn, locks_status **ret_status);
const char	*locks_status_version(const locks_status *status);
double		 locks_status_uptime(const locks_status *status);
int64_t		 locks_status_connections(const locks_status *status);
int64_t		 locks_status_locks_held(const locks_status *status);
int64_t		 locks_status_waiters(const locks_status *status);
int64_t		 locks_status_acquired_total(const locks_status *status);
const char	*locks_status_json(const locks_status *status);
void		 locks_status_free(locks_status *status);

/*
 * Ask the daemon for its metrics (status with "metrics"; PROTOCOL.md has
 * the shape): counters, gauges, histograms, the busiest names.  A daemon
 * too old to have them gives LOCKS_E_UNSUPPORTED.
 */
enum locks_metrics_format {
	LOCKS_METRICS_PROMETHEUS = 0,	/* text format 0.0.4, promtool's */
	LOCKS_METRICS_OPENMETRICS = 1	/* OpenMetrics 1.0 */
};

int		 locks_metrics_get(locks_conn *conn,
		    locks_metrics **ret_metrics);
/* The metrics object, as one line of JSON. */
const char	*locks_metrics_json(const locks_metrics *metrics);
/*
 * The metrics as a scraper reads them, ending in "# EOF"; it lives as
 * long as metrics.  NULL if out of memory.
 */
const char	*locks_metrics_text(locks_metrics *metrics,
		    enum locks_metrics_format format);
void		 locks_metrics_free(locks_metrics *metrics);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif

#endif /* LOCKS_H */
