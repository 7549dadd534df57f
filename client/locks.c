/*
 * liblocks: a blocking client for locksd over its Unix socket.  This file
 * holds the public operations; liblocks.h says where the rest lives.
 * Requests are built and replies decoded with the shared codec in
 * protocol/.
 */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "liblocks.h"

_Static_assert(LOCKS_MAX_NAME == PROTO_MAX_NAME &&
    LOCKS_MAX_OWNER == PROTO_MAX_LABEL &&
    (long)LOCKS_MAX_SECONDS == (long)PROTO_MAX_SECONDS,
    "the limits in locks.h must be the protocol's");

/* Write the default socket path into buf, as snprintf does. */
int
locks_default_socket(char *buf, size_t size)
{
	return proto_default_socket(buf, size);
}

/* Return 1 if name follows the protocol's name rules. */
int
locks_name_valid(const char *name)
{
	return name != NULL && proto_name_valid(name, strlen(name));
}

/*
 * Check the protocol number in the hello reply: a daemon that speaks
 * another version (any change of it breaks compatibility, PROTOCOL.md)
 * would misread us, or we it.
 */
static int
check_protocol(locks_conn *conn, struct json_object *reply)
{
	struct json_object	*value;
	int64_t			 version;

	if (!json_object_object_get_ex(reply, "protocol", &value) ||
	    !json_object_is_type(value, json_type_int)) {
		error_msg(conn, "locksd at %s did not say which protocol it "
		    "speaks", conn->path);
		return LOCKS_E_PROTOCOL;
	}
	version = json_object_get_int64(value);
	if (version != PROTO_VERSION) {
		error_msg(conn, "locksd at %s speaks protocol %" PRId64
		    ", and this liblocks speaks protocol %d", conn->path,
		    version, PROTO_VERSION);
		return LOCKS_E_VERSION;
	}
	return LOCKS_OK;
}

/* Say hello with our client label, and check the daemon's protocol. */
static int
conn_hello(locks_conn *conn, const char *client)
{
	struct proto_request	 req;
	struct json_object	*reply;
	int			 error;

	memset(&req, 0, sizeof req);
	req.op = PROTO_OP_HELLO;
	req.client = client;
	if ((error = conn_transact(conn, &req, NULL, &reply, NULL,
	    NULL)) != LOCKS_OK)
		return error;
	if ((error = conn_reply_error(conn, reply)) == LOCKS_OK)
		error = check_protocol(conn, reply);
	json_object_put(reply);
	return error;
}

/*
 * Connect to the system broker if one answers, else to the per-user one;
 * if neither does, the message names both and how to start one.  It
 * starts with the per-user socket's "cannot connect to PATH: ", as for
 * any one socket, because that is the path locks_default_socket names.
 */
static int
conn_open_discover(locks_conn **ret_conn)
{
	char		 user[4096], sys_why[LOCKS_MSG_MAX];
	char		 user_why[LOCKS_MSG_MAX];
	const char	*sys = proto_system_socket(), *why;
	int		 error, n;

	error = conn_open(sys, CONN_TRUST_SYSTEM, ret_conn);
	/* A system socket that answers but fails its checks is refused. */
	if (error != LOCKS_E_CONNECT)
		return error;
	why = locks_last_message(NULL);
	if (strncmp(why, CONN_FAILED, strlen(CONN_FAILED)) == 0)
		why += strlen(CONN_FAILED);
	snprintf(sys_why, sizeof sys_why, "%s", why);
	/*
	 * A system socket that is there but does not answer is a system
	 * broker that is down: the per-user one's locks are other locks,
	 * so passing over to it would let two jobs in under one name.
	 */
	if (access(sys, F_OK) == 0 || (errno != ENOENT && errno != ENOTDIR)) {
		error_msg(NULL, "cannot connect to the system broker at %s; "
		    "it is there but does not answer: start it with "
		    "`systemctl start locksd.socket`, or remove the stale "
		    "socket (a per-user broker would hold other locks)",
		    sys_why);
		return LOCKS_E_CONNECT;
	}
	n = proto_user_socket(user, sizeof user);
	if (n < 0 || (size_t)n >= sizeof user) {
		error_msg(NULL, "default socket path too long");
		return LOCKS_E_CONNECT;
	}
	error = conn_open(user, CONN_TRUST_USER, ret_conn);
	if (error != LOCKS_E_CONNECT)
		return error;
	/* The message is rewritten in place: keep the per-user one first. */
	snprintf(user_why, sizeof user_why, "%s", locks_last_message(NULL));
	error_msg(NULL, "%s, nor to the system broker at %s; start it with "
	    "`systemctl start locksd.socket`, or start your own with "
	    "`locksd`", user_why, sys_why);
	return LOCKS_E_CONNECT;
}

/*
 * Open the default socket: $LOCKS_SOCKET, or the system socket for root,
 * as given; otherwise discover one.
 */
static int
conn_open_default(locks_conn **ret_conn)
{
	char	 path[4096];
	int	 n;

	if (proto_socket_env() == NULL && geteuid() != 0)
		return conn_open_discover(ret_conn);
	n = proto_default_socket(path, sizeof path);
	if (n < 0 || (size_t)n >= sizeof path) {
		error_msg(NULL, "default socket path too long");
		return LOCKS_E_CONNECT;
	}
	return conn_open(path, CONN_TRUST_CALLER, ret_conn);
}

/* Connect to the daemon at path (NULL: the default, checked) and say hello. */
int
locks_connect(const char *path, const char *client, locks_conn **ret_conn)
{
	locks_conn	*conn;
	int		 error;

	if (client == NULL)
		client = program_invocation_short_name;
	if (strlen(client) > PROTO_MAX_LABEL) {
		error_msg(NULL, "client label longer than %d bytes",
		    PROTO_MAX_LABEL);
		return LOCKS_E_INVAL;
	}
	if (path != NULL)
		error = conn_open(path, CONN_TRUST_CALLER, &conn);
	else
		error = conn_open_default(&conn);
	if (error != LOCKS_OK)
		return error;
	if ((error = conn_hello(conn, client)) != LOCKS_OK) {
		error_msg(NULL, "%s", conn->msg);
		conn_free(conn);
		return error;
	}
	*ret_conn = conn;
	return LOCKS_OK;
}

/* Close the connection; the daemon releases all it held or awaited. */
void
locks_close(locks_conn *conn)
{
	conn_free(conn);
}

/* Return the socket path this connection was made to. */
const char *
locks_socket_path(const locks_conn *conn)
{
	return conn->path;
}

/*
 * Check a lock target here, so a bad one costs no round trip: a name, or
 * a path (holding a '/') of at most PROTO_MAX_PATH bytes.
 */
static int
check_name(locks_conn *conn, const char *name)
{
	if (name != NULL && proto_is_path(name)) {
		if (strlen(name) <= PROTO_MAX_PATH)
			return LOCKS_OK;
		error_msg(conn, "path longer than %d bytes", PROTO_MAX_PATH);
		return LOCKS_E_INVALID_NAME;
	}
	if (name == NULL || !proto_name_valid(name, strlen(name))) {
		error_msg(conn, "name must be 1 to %d bytes of "
		    "[A-Za-z0-9._:@+-], not starting with '.', or a path "
		    "(with a '/')", PROTO_MAX_NAME);
		return LOCKS_E_INVALID_NAME;
	}
	return LOCKS_OK;
}

/*
 * A path as it goes on the wire, where strings are UTF-8: bytes that are
 * not become '?', the same way every time, so a release names what the
 * acquire did.  Returns a copy to free, or NULL.
 */
static char *
path_spelling(const char *path)
{
	char	*copy;
	size_t	 i, len = strlen(path);

	if ((copy = strdup(path)) == NULL || proto_utf8_valid(copy, len))
		return copy;
	for (i = 0; i < len; i++) {
		if ((unsigned char)copy[i] >= 0x80)
			copy[i] = '?';
	}
	return copy;
}

/*
 * Open a path to lock as flock(1) does: read-only, created 0666 if it is
 * missing (with create), and a directory read-only.  Returns the fd, or
 * -1 with the message set and errno kept.
 */
static int
path_open(locks_conn *conn, const char *path, int create)
{
	int	 fd, saved;

	fd = open(path, O_RDONLY | O_NOCTTY | O_CLOEXEC |
	    (create ? O_CREAT : 0), 0666);
	if (fd == -1 && errno == EISDIR)
		fd = open(path, O_RDONLY | O_NOCTTY | O_CLOEXEC);
	if (fd == -1) {
		saved = errno;
		error_msg(conn, "cannot open %s: %s", path, strerror(saved));
		errno = saved;
	}
	return fd;
}

/* Check acquire options against the protocol's ranges. */
static int
check_acquire_opts(locks_conn *conn, const struct locks_acquire_opts *opts)
{
	if (opts->mode != LOCKS_EXCLUSIVE && opts->mode != LOCKS_SHARED) {
		error_msg(conn, "mode must be exclusive or shared");
		return LOCKS_E_INVAL;
	}
	if (isnan(opts->timeout) || opts->timeout > PROTO_MAX_SECONDS) {
		error_msg(conn, "timeout must be at most %g seconds",
		    PROTO_MAX_SECONDS);
		return LOCKS_E_INVAL;
	}
	if (!(opts->notify_after >= 0 &&
	    opts->notify_after <= PROTO_MAX_SECONDS)) {
		error_msg(conn, "notify_after must be 0 to %g seconds",
		    PROTO_MAX_SECONDS);
		return LOCKS_E_INVAL;
	}
	if (opts->owner != NULL && strlen(opts->owner) > PROTO_MAX_LABEL) {
		error_msg(conn, "owner longer than %d bytes", PROTO_MAX_LABEL);
		return LOCKS_E_INVAL;
	}
	return LOCKS_OK;
}

/*
 * The held-list spelling of a cluster name: a byte no name or path
 * holds first, so both scopes share one list.  Returns a copy to free.
 */
static char *
held_cluster_key(const char *name)
{
	char	*key;

	if (asprintf(&key, "%c%s", HELD_CLUSTER, name) == -1)
		return NULL;
	return key;
}

/* Index of name among the held names, or -1. */
static ssize_t
held_find(const locks_conn *conn, const char *name)
{
	size_t	 i;

	for (i = 0; i < conn->nheld; i++) {
		if (strcmp(conn->held[i], name) == 0)
			return (ssize_t)i;
	}
	return -1;
}

/* Remember a granted name, for locks_held. */
static int
held_add(locks_conn *conn, const char *name)
{
	char	**grown, *copy;

	if ((copy = strdup(name)) == NULL)
		return LOCKS_E_NOMEM;
	grown = reallocarray(conn->held, conn->nheld + 1, sizeof *grown);
	if (grown == NULL) {
		free(copy);
		return LOCKS_E_NOMEM;
	}
	conn->held = grown;
	conn->held[conn->nheld++] = copy;
	return LOCKS_OK;
}

/* Remember a granted cluster name. */
static int
held_add_cluster(locks_conn *conn, const char *name)
{
	char	*key;
	int	 error;

	if ((key = held_cluster_key(name)) == NULL)
		return LOCKS_E_NOMEM;
	error = held_add(conn, key);
	free(key);
	return error;
}

/* Forget a released name. */
static void
held_remove(locks_conn *conn, const char *name)
{
	ssize_t	 i;

	if ((i = held_find(conn, name)) == -1)
		return;
	free(conn->held[i]);
	conn->held[i] = conn->held[--conn->nheld];
}

/* Whether the connection holds name in the cluster. */
static int
cluster_held(const locks_conn *conn, const char *name)
{
	char	*key;
	int	 held;

	if ((key = held_cluster_key(name)) == NULL)
		return 0;
	held = held_find(conn, key) != -1;
	free(key);
	return held;
}

/* Forget a cluster name released or lost. */
static void
cluster_forget(locks_conn *conn, const char *name)
{
	char	*key;

	if ((key = held_cluster_key(name)) != NULL)
		held_remove(conn, key);
	free(key);
}

/* A cluster lock's lease lapsed: forget it, and have locks_check say. */
void
conn_cluster_lost(locks_conn *conn, const char *name)
{
	cluster_forget(conn, name);
	conn->cluster_lost = 1;
	error_msg(conn, "lost the cluster lock %s: locksd's etcd lease "
	    "lapsed", name);
}

/* Index of name among the locks watched for contended events, or -1. */
static ssize_t
contended_find(const locks_conn *conn, const char *name)
{
	size_t	 i;

	for (i = 0; i < conn->ncontended; i++) {
		if (strcmp(conn->contended[i].name, name) == 0)
			return (ssize_t)i;
	}
	return -1;
}

/*
 * Watch name for contended events, before its acquire is sent: its grant
 * may bring one along in the same read.
 */
static int
contended_watch(locks_conn *conn, const char *name, locks_contended_cb cb,
    void *arg)
{
	struct contended_watch	*grown;
	char			*copy;

	if ((copy = strdup(name)) == NULL)
		return LOCKS_E_NOMEM;
	grown = reallocarray(conn->contended, conn->ncontended + 1,
	    sizeof *grown);
	if (grown == NULL) {
		free(copy);
		return LOCKS_E_NOMEM;
	}
	conn->contended = grown;
	grown[conn->ncontended].name = copy;
	grown[conn->ncontended].cb = cb;
	grown[conn->ncontended].arg = arg;
	conn->ncontended++;
	return LOCKS_OK;
}

/* Stop watching name for contended events. */
static void
contended_forget(locks_conn *conn, const char *name)
{
	ssize_t	 i;

	if ((i = contended_find(conn, name)) == -1)
		return;
	free(conn->contended[i].name);
	conn->contended[i] = conn->contended[--conn->ncontended];
}

/* Stop watching every lock, as the connection goes. */
void
contended_forget_all(locks_conn *conn)
{
	while (conn->ncontended > 0)
		free(conn->contended[--conn->ncontended].name);
	free(conn->contended);
	conn->contended = NULL;
}

/* A local lock an upgrade lost: forget it, and have locks_check say. */
void
conn_local_lost(locks_conn *conn, const char *name)
{
	held_remove(conn, name);
	contended_forget(conn, name);
	conn->cluster_lost = 1;
	error_msg(conn, "lost the lock %s: an outside flock got in while "
	    "locksd upgraded it", name);
}

/* Whether name is a held lock whose contended events have a callback. */
int
conn_contended_watched(const locks_conn *conn, const char *name)
{
	return contended_find(conn, name) != -1;
}

/*
 * A contended event for name: call its lock's callback, with requests
 * on the connection refused meanwhile (locks_check and the transaction
 * that read the event are not reentrant).
 */
void
conn_contended(locks_conn *conn, const char *name, int waiters,
    const locks_holder *first)
{
	ssize_t	 i;

	if ((i = contended_find(conn, name)) == -1)
		return;
	conn->in_contended = 1;
	conn->contended[i].cb(name, waiters, first, conn->contended[i].arg);
	conn->in_contended = 0;
}

/*
 * Send an acquire (with the descriptors set on conn, if any) and take its
 * grant; the token goes to *ret_value.  held says whether the connection
 * keeps the lock (not after a handoff).
 */
static int
acquire_send(locks_conn *conn, const char *name,
    const struct locks_acquire_opts *opts, int handoff, int held,
    int64_t *ret_value)
{
	struct proto_request	 req;
	struct blocking		 blk;
	struct json_object	*reply, *token;
	int64_t			 value;
	int			 error;

	memset(&req, 0, sizeof req);
	req.op = PROTO_OP_ACQUIRE;
	req.name = name;
	req.handoff = handoff;
	req.mode = opts->mode == LOCKS_SHARED ? PROTO_SHARED :
	    PROTO_EXCLUSIVE;
	req.timeout = opts->timeout < 0 ? -1 : opts->timeout;
	/* Without a callback, ask for no blocking event at all. */
	req.notify_after = opts->on_blocking != NULL ? opts->notify_after :
	    PROTO_MAX_SECONDS;
	req.owner = opts->owner;
	req.scope = opts->scope == LOCKS_CLUSTER ? PROTO_SCOPE_CLUSTER :
	    PROTO_SCOPE_LOCAL;
	req.notify_contended = opts->on_contended != NULL;
	req.detect_deadlock = opts->detect_deadlock != 0;
	blk.name = name;
	blk.cb = opts->on_blocking;
	blk.arg = opts->arg;
	if (req.notify_contended && contended_watch(conn, name,
	    opts->on_contended, opts->arg) != LOCKS_OK) {
		conn->nsend_fds = 0;
		error_msg(conn, "out of memory");
		return LOCKS_E_NOMEM;
	}
	error = conn_transact_fast(conn, &req, &blk, &reply, &value);
	conn->nsend_fds = 0;
	if (error == LOCKS_OK && reply != NULL)
		error = conn_reply_error(conn, reply);
	if (error != LOCKS_OK) {
		if (req.notify_contended)
			contended_forget(conn, name);
		json_object_put(reply);
		return error;
	}
	if (reply != NULL && (!json_object_object_get_ex(reply, "token",
	    &token) || !json_object_is_type(token, json_type_int)))
		value = 0;
	else if (reply != NULL)
		value = json_object_get_int64(token);
	if (value <= 0) {
		/* Granted, but unusable: give the lock back by breaking. */
		json_object_put(reply);
		error_msg(conn, "acquire reply has no token");
		return conn_break(conn, LOCKS_E_PROTOCOL);
	}
	if (held && (opts->scope == LOCKS_CLUSTER ? held_add_cluster(conn,
	    name) : held_add(conn, name)) != LOCKS_OK) {
		/* Untracked locks would defeat locks_held: give it back. */
		json_object_put(reply);
		error_msg(conn, "out of memory");
		return conn_break(conn, LOCKS_E_NOMEM);
	}
	*ret_value = value;
	json_object_put(reply);
	return LOCKS_OK;
}

/* The checks every acquire makes first; opts NULL gets the defaults. */
static int
acquire_check(locks_conn *conn, const struct locks_acquire_opts **opts)
{
	static const struct locks_acquire_opts dflt = LOCKS_ACQUIRE_OPTS_INIT;

	if (conn == NULL) {
		error_msg(NULL, "no connection");
		return LOCKS_E_INVAL;
	}
	if (*opts == NULL)
		*opts = &dflt;
	return check_acquire_opts(conn, *opts);
}

/*
 * A path's acquire: the file opened here, its descriptor sent with the
 * request and closed after, so the daemon holds the only copy.
 */
static int
acquire_path(locks_conn *conn, const char *path,
    const struct locks_acquire_opts *opts, int64_t *ret_value)
{
	char	*spelled;
	int	 fd, error;

	if ((fd = path_open(conn, path, 1)) == -1)
		return LOCKS_E_OPEN;
	if ((spelled = path_spelling(path)) == NULL) {
		close(fd);
		error_msg(conn, "out of memory");
		return LOCKS_E_NOMEM;
	}
	conn->send_fds[0] = fd;
	conn->nsend_fds = 1;
	error = acquire_send(conn, spelled, opts, 0, 1, ret_value);
	close(fd);
	free(spelled);
	return error;
}

/* Take a lock (a name or a path), waiting as opts say. */
int
locks_acquire(locks_conn *conn, const char *target,
    const struct locks_acquire_opts *opts, int64_t *ret_token)
{
	int64_t	 value;
	int	 error;

	if ((error = acquire_check(conn, &opts)) != LOCKS_OK ||
	    (error = check_name(conn, target)) != LOCKS_OK)
		return error;
	if (proto_is_path(target) && opts->scope == LOCKS_CLUSTER) {
		error_msg(conn, "a cluster lock takes a name, not a path");
		return LOCKS_E_INVALID_NAME;
	}
	if (proto_is_path(target))
		error = acquire_path(conn, target, opts, &value);
	else
		error = acquire_send(conn, target, opts, 0, 1, &value);
	if (error == LOCKS_OK && ret_token != NULL)
		*ret_token = value;
	return error;
}

/*
 * The path the kernel gives fd, as the descriptor form names its lock;
 * "/proc/PID/fd/N" for one without a path.  Returns a copy to free.
 */
static char *
fd_path(int fd)
{
	char	 link[64], path[PROTO_MAX_PATH + 1];
	ssize_t	 n;

	snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
	if ((n = readlink(link, path, sizeof path - 1)) <= 0 ||
	    path[0] != '/') {
		snprintf(path, sizeof path, "/proc/%ld/fd/%d", (long)getpid(),
		    fd);
		n = (ssize_t)strlen(path);
	}
	path[n] = '\0';
	return path_spelling(path);
}

/*
 * The descriptor form: the daemon queues for fd's file, then moves the
 * flock onto fd's own open file description.  It gets fd and a second
 * open of the file (its own, to wait on), which is closed here after.
 */
static int
acquire_fd_once(locks_conn *conn, int fd,
    const struct locks_acquire_opts *opts, int64_t *ret_token)
{
	char	 link[64], *name;
	int64_t	 value = 0;
	int	 own, error;

	/* flock(1) needs no read access: a write-only open does too. */
	snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
	if ((own = open(link, O_WRONLY | O_NOCTTY | O_CLOEXEC)) == -1 &&
	    (own = path_open(conn, link, 0)) == -1)
		return LOCKS_E_OPEN;
	if ((name = fd_path(fd)) == NULL) {
		close(own);
		error_msg(conn, "out of memory");
		return LOCKS_E_NOMEM;
	}
	conn->send_fds[0] = fd;
	conn->send_fds[1] = own;
	conn->nsend_fds = 2;
	error = acquire_send(conn, name, opts, 1, 0, &value);
	close(own);
	free(name);
	if (error == LOCKS_OK && ret_token != NULL)
		*ret_token = value;
	return error;
}

static double
monotonic_now(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int
locks_acquire_fd(locks_conn *conn, int fd,
    const struct locks_acquire_opts *opts, int64_t *ret_token)
{
	struct locks_acquire_opts	 again;
	double				 deadline, left;
	int				 error;

	if ((error = acquire_check(conn, &opts)) != LOCKS_OK)
		return error;
	if (opts->scope == LOCKS_CLUSTER) {
		error_msg(conn, "a cluster lock takes a name, not a "
		    "descriptor");
		return LOCKS_E_INVAL;
	}
	if (fd < 0 || fcntl(fd, F_GETFD) == -1) {
		error_msg(conn, "descriptor %d is not open", fd);
		return LOCKS_E_INVAL;
	}
	if (opts->on_contended != NULL) {
		error_msg(conn, "on_contended cannot go with the descriptor "
		    "form: the lock is handed over, and the broker no longer "
		    "sees who waits behind it");
		return LOCKS_E_INVAL;
	}
	if (opts->detect_deadlock) {
		error_msg(conn, "detect_deadlock cannot go with the descriptor "
		    "form: the lock is handed over to a descriptor, which the "
		    "broker cannot see waiting for anything");
		return LOCKS_E_INVAL;
	}
	again = *opts;
	deadline = monotonic_now() + opts->timeout;
	/*
	 * An exclusive grant moves the flock onto fd with an unlock and a
	 * lock, and a process outside the broker waiting in flock(2) may
	 * take the file in between: the daemon then answers timeout.  Wait
	 * again, as flock(1) would, while time is left (a real timeout
	 * leaves none).
	 */
	while ((error = acquire_fd_once(conn, fd, &again, ret_token)) ==
	    LOCKS_E_TIMEOUT && opts->timeout != 0) {
		if (opts->timeout > 0) {
			if ((left = deadline - monotonic_now()) < 0.001)
				break;
			again.timeout = left;
		}
	}
	return error;
}

/* Release a lock held locally, else one of the name held in the cluster. */
int
locks_release(locks_conn *conn, const char *name)
{
	if (conn == NULL || name == NULL || held_find(conn, name) != -1 ||
	    !cluster_held(conn, name))
		return locks_release_scope(conn, name, LOCKS_LOCAL);
	return locks_release_scope(conn, name, LOCKS_CLUSTER);
}

/* Release a lock of a scope this connection holds, or cancel its wait. */
int
locks_release_scope(locks_conn *conn, const char *name,
    enum locks_scope scope)
{
	struct proto_request	 req;
	char			*spelled;
	int			 error;

	if (conn == NULL) {
		error_msg(NULL, "no connection");
		return LOCKS_E_INVAL;
	}
	if ((error = check_name(conn, name)) != LOCKS_OK)
		return error;
	memset(&req, 0, sizeof req);
	req.op = PROTO_OP_RELEASE;
	if ((spelled = path_spelling(name)) == NULL) {
		error_msg(conn, "out of memory");
		return LOCKS_E_NOMEM;
	}
	req.name = spelled;
	req.scope = scope == LOCKS_CLUSTER ? PROTO_SCOPE_CLUSTER :
	    PROTO_SCOPE_LOCAL;
	error = conn_simple(conn, &req);
	if (error == LOCKS_OK || error == LOCKS_E_NOT_HELD) {
		if (scope == LOCKS_CLUSTER)
			cluster_forget(conn, spelled);
		else {
			held_remove(conn, spelled);
			contended_forget(conn, spelled);
		}
	}
	free(spelled);
	return error;
}

/* Convert a held local lock to mode, atomically (see locks.h). */
int
locks_convert(locks_conn *conn, const char *target, enum locks_mode mode,
    double timeout, int64_t *ret_token)
{
	struct proto_request	 req;
	struct json_object	*reply = NULL;
	char			*spelled;
	int64_t			 token = 0;
	int			 error;

	if (conn == NULL || (mode != LOCKS_EXCLUSIVE && mode != LOCKS_SHARED) ||
	    timeout > LOCKS_MAX_SECONDS) {
		error_msg(conn, conn == NULL ? "no connection" :
		    "bad mode or timeout");
		return LOCKS_E_INVAL;
	}
	if ((error = check_name(conn, target)) != LOCKS_OK)
		return error;
	if ((spelled = path_spelling(target)) == NULL) {
		error_msg(conn, "out of memory");
		return LOCKS_E_NOMEM;
	}
	memset(&req, 0, sizeof req);
	req.op = PROTO_OP_CONVERT;
	req.name = spelled;
	req.mode = mode == LOCKS_SHARED ? PROTO_SHARED : PROTO_EXCLUSIVE;
	req.timeout = timeout < 0 ? -1 : timeout;
	error = conn_transact_fast(conn, &req, NULL, &reply, &token);
	free(spelled);
	if (error == LOCKS_OK && reply != NULL)
		error = conn_reply_error(conn, reply);
	if (error == LOCKS_OK && reply != NULL)
		token = decode_reply_int(reply, "token");
	json_object_put(reply);
	if (error == LOCKS_OK && ret_token != NULL)
		*ret_token = token;
	return error;
}

/* The connection's socket, for an event loop to watch for loss. */
int
locks_fd(const locks_conn *conn)
{
	return conn != NULL ? conn->fd : -1;
}

/*
 * Check without blocking that the connection, and so every lock it holds,
 * is alive.  What the daemon sent since the last request (pushed events)
 * is read and handled on the way, so the socket is quiet again after;
 * EOF, an error or nonsense on the socket means the locks are gone.
 */
int
locks_check(locks_conn *conn)
{
	int	 error;

	if (conn == NULL) {
		error_msg(NULL, "no connection");
		return LOCKS_E_INVAL;
	}
	if (conn->broken)
		return LOCKS_E_LOST;
	if ((error = conn_drain(conn)) == LOCKS_OK) {
		/* A lapsed cluster lease: said once, the connection lives. */
		if (!conn->cluster_lost)
			return LOCKS_OK;
		conn->cluster_lost = 0;
		return LOCKS_E_LOST;
	}
	/* A hang-up needs no more words; nonsense or no memory does. */
	if (error == LOCKS_E_LOST)
		error_msg(conn, "lost the connection to locksd at %s",
		    conn->path);
	else
		error_msg(conn, "lost the connection to locksd at %s: %s",
		    conn->path, conn->msg);
	return conn_break(conn, LOCKS_E_LOST);
}

/* Whether this connection holds name and is still alive. */
int
locks_held(locks_conn *conn, const char *name)
{
	if (conn == NULL || name == NULL || (held_find(conn, name) == -1 &&
	    !cluster_held(conn, name)))
		return 0;
	/* A lost event read now forgets the name: look again after. */
	if (locks_check(conn) == LOCKS_E_LOST && conn->broken)
		return 0;
	return held_find(conn, name) != -1 || cluster_held(conn, name);
}

/* Make a round trip to check the daemon is alive. */
int
locks_ping(locks_conn *conn)
{
	struct proto_request	 req;

	if (conn == NULL) {
		error_msg(NULL, "no connection");
		return LOCKS_E_INVAL;
	}
	memset(&req, 0, sizeof req);
	req.op = PROTO_OP_PING;
	return conn_simple(conn, &req);
}

/*
 * Ask for the list page by page (the daemon bounds each reply), into one
 * reply: the first, with every page's locks.  *ret_reply is the caller's.
 */
static int
list_fetch(locks_conn *conn, struct proto_request *req, int fd,
    struct json_object **ret_reply)
{
	struct json_object	*first = NULL, *reply, *all;
	char			 after[PROTO_MAX_PATH + 1];
	int			 error = LOCKS_OK, more = 1;

	if ((all = json_object_new_array()) == NULL)
		return LOCKS_E_NOMEM;
	while (more) {
		if (fd >= 0) {
			conn->send_fds[0] = fd;
			conn->nsend_fds = 1;
		}
		error = conn_transact(conn, req, NULL, &reply, NULL, NULL);
		conn->nsend_fds = 0;
		if (error != LOCKS_OK)
			break;
		error = conn_reply_error(conn, reply);
		if (error == LOCKS_OK)
			error = decode_list_page(reply, all, req->after, after,
			    sizeof after, &more);
		if (first == NULL)
			first = reply;
		else
			json_object_put(reply);
		if (error != LOCKS_OK)
			break;
		req->after = after;
	}
	if (error != LOCKS_OK) {
		json_object_put(first);
		json_object_put(all);
		return error;
	}
	json_object_object_add(first, "locks", all);
	json_object_object_del(first, "more");
	*ret_reply = first;
	return LOCKS_OK;
}

static int	list_decode(locks_conn *, struct json_object *, locks_list **);

/*
 * List one path's lock: the file opened here without creating it, its
 * descriptor sent with each page; a file that is not there is unlocked.
 */
static int
list_path(locks_conn *conn, struct proto_request *req, locks_list **ret_list)
{
	struct json_object	*reply;
	char			*spelled;
	int			 fd, error;

	if ((fd = path_open(conn, req->name, 0)) == -1) {
		if (errno != ENOENT)
			return LOCKS_E_OPEN;
		reply = json_object_new_object();
		json_object_object_add(reply, "locks",
		    json_object_new_array());
		return list_decode(conn, reply, ret_list);
	}
	if ((spelled = path_spelling(req->name)) == NULL) {
		close(fd);
		error_msg(conn, "out of memory");
		return LOCKS_E_NOMEM;
	}
	req->name = spelled;
	error = list_fetch(conn, req, fd, &reply);
	close(fd);
	free(spelled);
	if (error != LOCKS_OK) {
		if (error == LOCKS_E_PROTOCOL)
			error_msg(conn, "malformed list reply");
		return error;
	}
	return list_decode(conn, reply, ret_list);
}

/* List the locks (name NULL: all of them); flags: LOCKS_LIST_ALL or 0. */
int
locks_list_query(locks_conn *conn, const char *name, int flags,
    locks_list **ret_list)
{
	struct proto_request	 req;
	struct json_object	*reply;
	int			 error;

	if (conn == NULL || ret_list == NULL) {
		error_msg(conn, "no connection or no result pointer");
		return LOCKS_E_INVAL;
	}
	if (name != NULL && (error = check_name(conn, name)) != LOCKS_OK)
		return error;
	if ((flags & ~(LOCKS_LIST_ALL | LOCKS_LIST_CLUSTER)) != 0) {
		error_msg(conn, "unknown list flags 0x%x", (unsigned)flags);
		return LOCKS_E_INVAL;
	}
	memset(&req, 0, sizeof req);
	req.op = PROTO_OP_LIST;
	req.name = name;
	req.all = (flags & LOCKS_LIST_ALL) != 0;
	req.scope = (flags & LOCKS_LIST_CLUSTER) != 0 ? PROTO_SCOPE_CLUSTER :
	    PROTO_SCOPE_LOCAL;
	if (name != NULL && proto_is_path(name))
		return list_path(conn, &req, ret_list);
	if ((error = list_fetch(conn, &req, -1, &reply)) != LOCKS_OK) {
		if (error == LOCKS_E_PROTOCOL)
			error_msg(conn, "malformed list reply");
		return error;
	}
	return list_decode(conn, reply, ret_list);
}

/* Turn a whole list reply, which it takes, into a locks_list. */
static int
list_decode(locks_conn *conn, struct json_object *reply,
    locks_list **ret_list)
{
	locks_list	*list;
	int		 error;

	if ((list = calloc(1, sizeof *list)) == NULL ||
	    (list->json = strdup(json_object_to_json_string_ext(reply,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE))) == NULL)
		error = LOCKS_E_NOMEM;
	else
		error = decode_list(reply, list);
	json_object_put(reply);
	if (error != LOCKS_OK) {
		locks_list_free(list);
		error_msg(conn, error == LOCKS_E_NOMEM ? "out of memory" :
		    "malformed list reply");
		return error;
	}
	*ret_list = list;
	return LOCKS_OK;
}

/* List the locks with holders or waiters; name NULL means all. */
int
locks_list_get(locks_conn *conn, const char *name, locks_list **ret_list)
{
	return locks_list_query(conn, name, 0, ret_list);
}

/* Ask the daemon for its counters. */
int
locks_status_get(locks_conn *conn, locks_status **ret_status)
{
	struct proto_request	 req;
	struct json_object	*reply;
	locks_status		*status;
	const char		*line;
	size_t			 len;
	int			 error;

	if (conn == NULL || ret_status == NULL) {
		error_msg(conn, "no connection or no result pointer");
		return LOCKS_E_INVAL;
	}
	memset(&req, 0, sizeof req);
	req.op = PROTO_OP_STATUS;
	if ((error = conn_transact(conn, &req, NULL, &reply, &line,
	    &len)) != LOCKS_OK)
		return error;
	if ((error = conn_reply_error(conn, reply)) != LOCKS_OK) {
		json_object_put(reply);
		return error;
	}
	if ((status = calloc(1, sizeof *status)) == NULL ||
	    (status->json = strndup(line, len)) == NULL ||
	    decode_status(reply, status) != LOCKS_OK) {
		json_object_put(reply);
		locks_status_free(status);
		error_msg(conn, "out of memory");
		return LOCKS_E_NOMEM;
	}
	json_object_put(reply);
	*ret_status = status;
	return LOCKS_OK;
}

/* Ask the daemon for its metrics: a status with "metrics":true. */
int
locks_metrics_get(locks_conn *conn, locks_metrics **ret_metrics)
{
	struct proto_request	 req;
	struct json_object	*reply, *obj;
	locks_metrics		*m;
	const char		*json;
	int			 error;

	if (conn == NULL || ret_metrics == NULL) {
		error_msg(conn, "no connection or no result pointer");
		return LOCKS_E_INVAL;
	}
	memset(&req, 0, sizeof req);
	req.op = PROTO_OP_STATUS;
	req.metrics = 1;
	if ((error = conn_transact(conn, &req, NULL, &reply, NULL,
	    NULL)) != LOCKS_OK)
		return error;
	if ((error = conn_reply_error(conn, reply)) != LOCKS_OK) {
		json_object_put(reply);
		return error;
	}
	if (!json_object_object_get_ex(reply, "metrics", &obj) ||
	    !json_object_is_type(obj, json_type_object)) {
		json_object_put(reply);
		error_msg(conn, "this locksd reports no metrics: it is older "
		    "than the status request's \"metrics\" field");
		return LOCKS_E_UNSUPPORTED;
	}
	json = json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN);
	if ((m = calloc(1, sizeof *m)) == NULL ||
	    (m->json = strdup(json)) == NULL) {
		free(m);
		json_object_put(reply);
		error_msg(conn, "out of memory");
		return LOCKS_E_NOMEM;
	}
	m->obj = json_object_get(obj);
	json_object_put(reply);
	*ret_metrics = m;
	return LOCKS_OK;
}
