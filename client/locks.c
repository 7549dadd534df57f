/*
 * liblocks: a blocking client for locksd over its Unix socket.  Requests
 * are built and replies decoded with the shared codec in protocol/.
 */

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "locks.h"
#include "protocol.h"

_Static_assert(LOCKS_E_BAD_JSON == -PROTO_E_BAD_JSON &&
    LOCKS_E_INVALID_NAME == -PROTO_E_INVALID_NAME &&
    LOCKS_E_TIMEOUT == -PROTO_E_TIMEOUT &&
    LOCKS_E_INTERNAL == -PROTO_E_INTERNAL &&
    PROTO_E_COUNT == PROTO_E_INTERNAL + 1,
    "locks_error must mirror enum proto_error");
_Static_assert((int)LOCKS_EXCLUSIVE == (int)PROTO_EXCLUSIVE &&
    (int)LOCKS_SHARED == (int)PROTO_SHARED,
    "locks_mode must mirror enum proto_mode");

#define LOCKS_MAX_REPLY	(16 * 1024 * 1024)	/* bytes in one reply line */
#define LOCKS_READ_MIN	4096			/* free space for one read */
#define LOCKS_MSG_MAX	512			/* bytes kept of a message */
#define LOCKS_REQ_STACK	1024			/* most request lines fit */

struct locks_conn {
	int			 fd;
	int			 broken;	/* after a transport error */
	int64_t			 next_id;
	char			*path;
	struct json_tokener	*tok;

	char			*buf;		/* bytes read, not yet used */
	size_t			 cap;
	size_t			 off;		/* start of the next line */
	size_t			 len;		/* end of the bytes read */
	size_t			 scan;		/* searched for LF up to here */

	char			 msg[LOCKS_MSG_MAX];

	char			**held;		/* names granted, not released */
	size_t			 nheld;
};

struct locks_holder {
	int			 external;
	pid_t			 pid;
	uid_t			 uid;
	gid_t			 gid;
	char			*client;
	char			*owner;
	char			*command;
	enum locks_mode		 mode;
	double			 since;
	int64_t			 token;
};

struct locks_lock {
	char			*name;
	locks_holder		*holders;
	size_t			 nholders;
	locks_holder		*waiters;
	size_t			 nwaiters;
};

struct locks_list {
	locks_lock		*locks;
	size_t			 count;
	char			*json;
};

struct locks_status {
	char			*version;
	double			 uptime;
	int64_t			 connections;
	int64_t			 locks_held;
	int64_t			 waiters;
	int64_t			 acquired_total;
	char			*json;
};

/* A blocking callback and what it needs, for the duration of one acquire. */
struct blocking {
	const char		*name;
	locks_blocking_cb	 cb;
	void			*arg;
};

/* The last message of this thread, for errors with no connection to keep it. */
static _Thread_local char last_msg[LOCKS_MSG_MAX];

/* Record a message on the connection (if any) and for the thread. */
static void __attribute__((format(printf, 2, 3)))
set_msg(locks_conn *conn, const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	vsnprintf(last_msg, sizeof last_msg, fmt, ap);
	va_end(ap);
	if (conn != NULL)
		memcpy(conn->msg, last_msg, sizeof conn->msg);
}

/* Return the protocol code of an error, or the library's own name for it. */
const char *
locks_error_code(int error)
{
	if (error <= 0 && error >= LOCKS_E_INTERNAL)
		return proto_error_code((enum proto_error)-error);
	switch (error) {
	case LOCKS_E_CONNECT:
		return "connect_failed";
	case LOCKS_E_LOST:
		return "connection_lost";
	case LOCKS_E_PROTOCOL:
		return "protocol_error";
	case LOCKS_E_NOMEM:
		return "no_memory";
	case LOCKS_E_INVAL:
		return "invalid_argument";
	case LOCKS_E_UNTRUSTED:
		return "untrusted_socket";
	}
	return "unknown";
}

/* Describe an error in one sentence for people. */
const char *
locks_strerror(int error)
{
	switch (error) {
	case LOCKS_OK:
		return "Success";
	case LOCKS_E_BAD_JSON:
		return "The daemon could not parse the request";
	case LOCKS_E_BAD_REQUEST:
		return "The daemon rejected a malformed request";
	case LOCKS_E_UNKNOWN_OP:
		return "The daemon does not know the operation";
	case LOCKS_E_INVALID_NAME:
		return "Invalid lock name";
	case LOCKS_E_ALREADY_HELD:
		return "The lock is already held or awaited on this connection";
	case LOCKS_E_NOT_HELD:
		return "The lock is not held on this connection";
	case LOCKS_E_TIMEOUT:
		return "Timed out waiting for the lock";
	case LOCKS_E_CANCELLED:
		return "The wait for the lock was cancelled";
	case LOCKS_E_TOO_LARGE:
		return "The request was too large";
	case LOCKS_E_LIMIT:
		return "The daemon hit a resource limit";
	case LOCKS_E_PERMISSION_DENIED:
		return "Permission denied by the daemon";
	case LOCKS_E_INTERNAL:
		return "Internal error in the daemon";
	case LOCKS_E_CONNECT:
		return "Cannot connect to the lock daemon";
	case LOCKS_E_LOST:
		return "The connection to the lock daemon was lost";
	case LOCKS_E_PROTOCOL:
		return "The lock daemon sent a reply that makes no sense";
	case LOCKS_E_NOMEM:
		return "Out of memory";
	case LOCKS_E_INVAL:
		return "Invalid argument";
	case LOCKS_E_UNTRUSTED:
		return "The lock daemon's socket is not trustworthy";
	}
	return "Unknown error";
}

/* Return the connection's last error message, or this thread's for NULL. */
const char *
locks_last_message(const locks_conn *conn)
{
	return conn != NULL ? conn->msg : last_msg;
}

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

/* Mark the connection unusable, so the daemon drops what it held for us. */
static int
conn_break(locks_conn *conn, int error)
{
	if (!conn->broken) {
		conn->broken = 1;
		shutdown(conn->fd, SHUT_RDWR);
	}
	return error;
}

/* Send one whole line, retrying short writes and EINTR. */
static int
conn_send_line(locks_conn *conn, const char *line, size_t len)
{
	ssize_t	 n;

	while (len > 0) {
		n = send(conn->fd, line, len, MSG_NOSIGNAL);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			/* Not broken yet: the daemon may have said why. */
			set_msg(conn, "connection to the daemon lost: %s",
			    strerror(errno));
			return LOCKS_E_LOST;
		}
		line += n;
		len -= (size_t)n;
	}
	return LOCKS_OK;
}

/* Format a request with a fresh id and send it; returns the id used. */
static int
conn_send_request(locks_conn *conn, const struct proto_request *req,
    int64_t *ret_id)
{
	char	 stack[LOCKS_REQ_STACK], *line = stack;
	size_t	 len;
	int	 error;

	len = proto_request_format(stack, sizeof stack, req, conn->next_id);
	if (len > sizeof stack) {
		/* Long names or labels, escaped: format again on the heap. */
		if ((line = malloc(len)) == NULL) {
			set_msg(conn, "out of memory");
			return LOCKS_E_NOMEM;
		}
		proto_request_format(line, len, req, conn->next_id);
	}
	error = conn_send_line(conn, line, len);
	if (line != stack)
		free(line);
	if (error != LOCKS_OK)
		return error;
	*ret_id = conn->next_id++;
	return LOCKS_OK;
}

/* Make room for at least LOCKS_READ_MIN more bytes in the read buffer. */
static int
conn_make_room(locks_conn *conn)
{
	char	*buf;
	size_t	 cap;

	if (conn->off > 0) {
		memmove(conn->buf, conn->buf + conn->off,
		    conn->len - conn->off);
		conn->len -= conn->off;
		conn->scan -= conn->off;
		conn->off = 0;
	}
	if (conn->cap - conn->len >= LOCKS_READ_MIN)
		return LOCKS_OK;
	cap = conn->cap == 0 ? 2 * LOCKS_READ_MIN : conn->cap * 2;
	while (cap - conn->len < LOCKS_READ_MIN)
		cap *= 2;
	if ((buf = realloc(conn->buf, cap)) == NULL) {
		set_msg(conn, "out of memory");
		return conn_break(conn, LOCKS_E_NOMEM);
	}
	conn->buf = buf;
	conn->cap = cap;
	return LOCKS_OK;
}

/*
 * Read the next line (without its LF).  The line stays valid until the
 * next call; a line over LOCKS_MAX_REPLY bytes is a protocol error.
 */
static int
conn_read_line(locks_conn *conn, const char **ret_line, size_t *ret_len)
{
	char	*nl;
	ssize_t	 n;
	int	 error;

	for (;;) {
		nl = conn->len > conn->scan ? memchr(conn->buf + conn->scan,
		    '\n', conn->len - conn->scan) : NULL;
		if (nl != NULL) {
			*ret_line = conn->buf + conn->off;
			*ret_len = (size_t)(nl - *ret_line);
			conn->off = conn->scan = (size_t)(nl - conn->buf) + 1;
			return LOCKS_OK;
		}
		conn->scan = conn->len;
		if (conn->len - conn->off > LOCKS_MAX_REPLY) {
			set_msg(conn, "reply longer than %d bytes",
			    LOCKS_MAX_REPLY);
			return conn_break(conn, LOCKS_E_PROTOCOL);
		}
		if ((error = conn_make_room(conn)) != LOCKS_OK)
			return error;
		n = recv(conn->fd, conn->buf + conn->len,
		    conn->cap - conn->len, 0);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			set_msg(conn, "connection to the daemon lost: %s",
			    strerror(errno));
			return conn_break(conn, LOCKS_E_LOST);
		}
		if (n == 0) {
			set_msg(conn, "the daemon closed the connection");
			return conn_break(conn, LOCKS_E_LOST);
		}
		conn->len += (size_t)n;
	}
}

/* Whether a reply or event carries the integer id we sent. */
static int
reply_has_id(struct json_object *reply, int64_t id)
{
	struct json_object	*value;

	if (!json_object_object_get_ex(reply, "id", &value))
		return 0;
	/* Our ids are integers: a null id is the daemon refusing us. */
	if (json_object_is_type(value, json_type_null))
		return proto_reply_is_final(reply);
	return json_object_is_type(value, json_type_int) &&
	    json_object_get_int64(value) == id;
}

/* Copy a string or fail; NULL becomes "". */
static int
copy_string(const char *text, char **ret_copy)
{
	char	*copy;

	if ((copy = strdup(text != NULL ? text : "")) == NULL)
		return LOCKS_E_NOMEM;
	*ret_copy = copy;
	return LOCKS_OK;
}

/* Free the strings of n holders and the array itself. */
static void
holders_free(locks_holder *holders, size_t n)
{
	size_t	 i;

	for (i = 0; i < n; i++) {
		free(holders[i].client);
		free(holders[i].owner);
		free(holders[i].command);
	}
	free(holders);
}

/* Decode a JSON array of holders (absent: none) into an owned array. */
static int
holders_decode(struct json_object *obj, const char *key,
    locks_holder **ret_holders, size_t *ret_n)
{
	struct json_object	*array;
	struct proto_holder	 ph;
	locks_holder		*holders, *h;
	size_t			 i, n;

	if (!json_object_object_get_ex(obj, key, &array) ||
	    json_object_is_type(array, json_type_null)) {
		*ret_holders = NULL;
		*ret_n = 0;
		return LOCKS_OK;
	}
	if (!json_object_is_type(array, json_type_array))
		return LOCKS_E_PROTOCOL;
	n = json_object_array_length(array);
	if (n == 0) {
		*ret_holders = NULL;
		*ret_n = 0;
		return LOCKS_OK;
	}
	if ((holders = calloc(n, sizeof *holders)) == NULL)
		return LOCKS_E_NOMEM;
	for (i = 0; i < n; i++) {
		h = &holders[i];
		if (proto_holder_decode(json_object_array_get_idx(array, i),
		    &ph) != 0) {
			holders_free(holders, n);
			return LOCKS_E_PROTOCOL;
		}
		h->external = ph.external;
		h->pid = ph.pid;
		h->uid = ph.uid;
		h->gid = ph.gid;
		h->mode = ph.mode == PROTO_SHARED ? LOCKS_SHARED :
		    LOCKS_EXCLUSIVE;
		h->since = ph.since;
		h->token = ph.token;
		if (copy_string(ph.client, &h->client) != LOCKS_OK ||
		    copy_string(ph.owner, &h->owner) != LOCKS_OK ||
		    copy_string(ph.command, &h->command) != LOCKS_OK) {
			holders_free(holders, n);
			return LOCKS_E_NOMEM;
		}
	}
	*ret_holders = holders;
	*ret_n = n;
	return LOCKS_OK;
}

/* Free what a lock owns, not the lock itself. */
static void
lock_clear(locks_lock *lock)
{
	free(lock->name);
	holders_free(lock->holders, lock->nholders);
	holders_free(lock->waiters, lock->nwaiters);
	memset(lock, 0, sizeof *lock);
}

/* Decode one {"name","holders","waiters"} object into lock. */
static int
lock_decode(struct json_object *obj, locks_lock *lock)
{
	struct json_object	*name;
	int			 error;

	memset(lock, 0, sizeof *lock);
	if (!json_object_is_type(obj, json_type_object) ||
	    !json_object_object_get_ex(obj, "name", &name) ||
	    !json_object_is_type(name, json_type_string))
		return LOCKS_E_PROTOCOL;
	if ((error = copy_string(json_object_get_string(name),
	    &lock->name)) != LOCKS_OK)
		return error;
	if ((error = holders_decode(obj, "holders", &lock->holders,
	    &lock->nholders)) != LOCKS_OK ||
	    (error = holders_decode(obj, "waiters", &lock->waiters,
	    &lock->nwaiters)) != LOCKS_OK) {
		lock_clear(lock);
		return error;
	}
	return LOCKS_OK;
}

/*
 * Hand a blocking event to the acquire's callback.  A malformed event is
 * a protocol error; running out of memory only skips the notice, since
 * the acquire itself is still pending and must not be abandoned.
 */
static int
conn_blocking_event(locks_conn *conn, struct json_object *event,
    const struct blocking *blk)
{
	struct json_object	*kind, *pos;
	locks_lock		 lock;
	int			 error, position = 0;

	if (!json_object_object_get_ex(event, "event", &kind) ||
	    !json_object_is_type(kind, json_type_string) ||
	    strcmp(json_object_get_string(kind), "blocking") != 0 ||
	    blk == NULL || blk->cb == NULL)
		return LOCKS_OK;
	if (json_object_object_get_ex(event, "position", &pos) &&
	    json_object_is_type(pos, json_type_int))
		position = json_object_get_int(pos);
	memset(&lock, 0, sizeof lock);
	if ((error = copy_string(blk->name, &lock.name)) != LOCKS_OK)
		return LOCKS_OK;
	error = holders_decode(event, "holders", &lock.holders,
	    &lock.nholders);
	if (error == LOCKS_E_PROTOCOL) {
		lock_clear(&lock);
		set_msg(conn, "malformed blocking event");
		return conn_break(conn, LOCKS_E_PROTOCOL);
	}
	if (error == LOCKS_OK)
		blk->cb(&lock, position, blk->arg);
	lock_clear(&lock);
	return LOCKS_OK;
}

/*
 * A send failed because the daemon closed the connection: read the error
 * line it may have sent first (permission_denied, limit), else say lost.
 */
static int
conn_read_refusal(locks_conn *conn)
{
	struct json_object	*reply = NULL;
	const char		*line, *msg;
	char			 saved[LOCKS_MSG_MAX];
	size_t			 len;
	int			 error = LOCKS_E_LOST;

	snprintf(saved, sizeof saved, "%s", conn->msg);
	if (conn_read_line(conn, &line, &len) == LOCKS_OK &&
	    proto_parse_line(conn->tok, line, len, &reply) == 0 &&
	    json_object_is_type(reply, json_type_object) &&
	    proto_reply_is_final(reply) &&
	    (error = -(int)proto_reply_error_decode(reply, &msg)) != LOCKS_OK)
		set_msg(conn, "%s", msg);
	else {
		error = LOCKS_E_LOST;
		set_msg(conn, "%s", saved);
	}
	json_object_put(reply);
	return conn_break(conn, error);
}

/*
 * Send a request and wait for its final reply, passing blocking events to
 * blk (may be NULL) and skipping lines for other ids.  On success the
 * reply is the caller's, and *ret_line (if not NULL) is its raw text,
 * valid until the next read on this connection.  With ret_token, a plain
 * success reply is taken without json-c: *ret_reply is then NULL and
 * *ret_token the grant's token (0 for a reply without one).
 */
static int
conn_transact_fast(locks_conn *conn, const struct proto_request *req,
    const struct blocking *blk, struct json_object **ret_reply,
    const char **ret_line, size_t *ret_len, int64_t *ret_token)
{
	struct json_object	*reply;
	const char		*line;
	size_t			 len;
	int64_t			 id;
	int			 error;

	if (conn->broken) {
		set_msg(conn, "the connection is unusable after an "
		    "earlier error");
		return LOCKS_E_LOST;
	}
	if ((error = conn_send_request(conn, req, &id)) != LOCKS_OK) {
		if (error == LOCKS_E_LOST)
			return conn_read_refusal(conn);
		return error;
	}
	for (;;) {
		if ((error = conn_read_line(conn, &line, &len)) != LOCKS_OK)
			return error;
		/* Blank lines are ignored, as the protocol says. */
		if (proto_blank(line, len))
			continue;
		if (ret_token != NULL &&
		    proto_success_scan(line, len, id, ret_token)) {
			*ret_reply = NULL;
			return LOCKS_OK;
		}
		if (proto_parse_line(conn->tok, line, len, &reply) == -1)
			reply = NULL;
		if (reply == NULL ||
		    !json_object_is_type(reply, json_type_object)) {
			json_object_put(reply);
			set_msg(conn, "the daemon sent a line that is not "
			    "a JSON object");
			return conn_break(conn, LOCKS_E_PROTOCOL);
		}
		if (!reply_has_id(reply, id)) {
			json_object_put(reply);
			continue;
		}
		if (proto_reply_is_final(reply))
			break;
		error = conn_blocking_event(conn, reply, blk);
		json_object_put(reply);
		if (error != LOCKS_OK)
			return error;
	}
	*ret_reply = reply;
	if (ret_line != NULL) {
		*ret_line = line;
		*ret_len = len;
	}
	return LOCKS_OK;
}

/* conn_transact_fast, always with a parsed reply. */
static int
conn_transact(locks_conn *conn, const struct proto_request *req,
    const struct blocking *blk, struct json_object **ret_reply,
    const char **ret_line, size_t *ret_len)
{
	return conn_transact_fast(conn, req, blk, ret_reply, ret_line, ret_len,
	    NULL);
}

/*
 * Turn a final reply's failure into our error, keeping the daemon's
 * message on the connection.  LOCKS_OK when the reply says ok.
 */
static int
reply_error(locks_conn *conn, struct json_object *reply)
{
	enum proto_error	 error;
	const char		*msg;

	error = proto_reply_error_decode(reply, &msg);
	if (error == PROTO_OK)
		return LOCKS_OK;
	set_msg(conn, "%s", msg);
	return -(int)error;
}

/* Run a request whose reply carries nothing but ok. */
static int
conn_simple(locks_conn *conn, const struct proto_request *req)
{
	struct json_object	*reply;
	int64_t			 token;
	int			 error;

	if ((error = conn_transact_fast(conn, req, NULL, &reply, NULL,
	    NULL, &token)) != LOCKS_OK || reply == NULL)
		return error;
	error = reply_error(conn, reply);
	json_object_put(reply);
	return error;
}

/* Connect fd to the path, waiting out an interrupted connect. */
static int
socket_connect(int fd, const char *path)
{
	struct sockaddr_un	 sun;
	struct pollfd		 pfd;
	socklen_t		 len;
	int			 so_error;

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof sun.sun_path) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(sun.sun_path, path, strlen(path));
	if (connect(fd, (struct sockaddr *)&sun, sizeof sun) == 0)
		return 0;
	if (errno != EINTR)
		return -1;
	/* The connect goes on in the background; wait for its outcome. */
	pfd.fd = fd;
	pfd.events = POLLOUT;
	while (poll(&pfd, 1, -1) == -1) {
		if (errno != EINTR)
			return -1;
	}
	len = sizeof so_error;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len) == -1)
		return -1;
	if (so_error != 0) {
		errno = so_error;
		return -1;
	}
	return 0;
}

/*
 * Check the directory of a per-user socket, as tmux does: a directory,
 * not a link to one, owned by us and writable by no one else.  Anyone who
 * could create entries in it could put their own socket there.
 */
static int
check_socket_dir(const char *path)
{
	char		 dir[PATH_MAX];
	const char	*slash;
	struct stat	 sb;
	long		 me = (long)geteuid();

	if ((slash = strrchr(path, '/')) == NULL ||
	    (size_t)(slash - path) >= sizeof dir) {
		set_msg(NULL, "cannot check the directory of %s", path);
		return LOCKS_E_UNTRUSTED;
	}
	memcpy(dir, path, (size_t)(slash - path));
	dir[slash - path] = '\0';
	if (lstat(*dir != '\0' ? dir : "/", &sb) == -1) {
		set_msg(NULL, "cannot connect to %s: %s", path,
		    strerror(errno));
		return LOCKS_E_CONNECT;
	}
	if (S_ISLNK(sb.st_mode))
		set_msg(NULL, "%s is a symbolic link, not a directory; "
		    "refusing to use its socket", dir);
	else if (!S_ISDIR(sb.st_mode))
		set_msg(NULL, "%s is not a directory; refusing to use its "
		    "socket", dir);
	else if ((long)sb.st_uid != me)
		set_msg(NULL, "%s is owned by uid %ld, not you (%ld); "
		    "refusing to use its socket", dir, (long)sb.st_uid, me);
	else if ((sb.st_mode & (S_IWGRP | S_IWOTH)) != 0)
		set_msg(NULL, "%s is writable by %s (mode %04o); refusing to "
		    "use its socket", dir, (sb.st_mode & S_IWOTH) != 0 ?
		    "others" : "its group", (unsigned)(sb.st_mode & 07777));
	else
		return LOCKS_OK;
	return LOCKS_E_UNTRUSTED;
}

/* Check that the daemon on a per-user socket is us or root. */
static int
check_peer(int fd, const char *path)
{
	struct ucred	 cred;
	socklen_t	 len = sizeof cred;
	long		 me = (long)geteuid();

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == -1) {
		set_msg(NULL, "cannot learn who serves %s: %s", path,
		    strerror(errno));
		return LOCKS_E_UNTRUSTED;
	}
	if ((long)cred.uid != me && cred.uid != 0) {
		set_msg(NULL, "%s is served by uid %ld (pid %ld), not by you "
		    "(%ld) or root; refusing to talk to it", path,
		    (long)cred.uid, (long)cred.pid, me);
		return LOCKS_E_UNTRUSTED;
	}
	return LOCKS_OK;
}

/* Allocate a connection around a connected socket. */
static int
conn_new(int fd, const char *path, locks_conn **ret_conn)
{
	locks_conn	*conn;

	if ((conn = calloc(1, sizeof *conn)) == NULL)
		return LOCKS_E_NOMEM;
	conn->fd = fd;
	conn->next_id = 1;
	if ((conn->path = strdup(path)) == NULL ||
	    (conn->tok = proto_tokener_new()) == NULL) {
		free(conn->path);
		free(conn);
		return LOCKS_E_NOMEM;
	}
	*ret_conn = conn;
	return LOCKS_OK;
}

/* Say hello with our client label. */
static int
conn_hello(locks_conn *conn, const char *client)
{
	struct proto_request	 req;

	memset(&req, 0, sizeof req);
	req.op = PROTO_OP_HELLO;
	req.client = client;
	return conn_simple(conn, &req);
}

/* Connect to the daemon at path (NULL: the default, checked) and say hello. */
int
locks_connect(const char *path, const char *client, locks_conn **ret_conn)
{
	char		 dflt[4096];
	locks_conn	*conn;
	int		 fd, error, n, per_user = 0;

	if (client == NULL)
		client = program_invocation_short_name;
	if (strlen(client) > PROTO_MAX_LABEL) {
		set_msg(NULL, "client label longer than %d bytes",
		    PROTO_MAX_LABEL);
		return LOCKS_E_INVAL;
	}
	if (path == NULL) {
		n = locks_default_socket(dflt, sizeof dflt);
		if (n < 0 || (size_t)n >= sizeof dflt) {
			set_msg(NULL, "default socket path too long");
			return LOCKS_E_CONNECT;
		}
		path = dflt;
		per_user = proto_default_socket_per_user();
	}
	if (per_user && (error = check_socket_dir(path)) != LOCKS_OK)
		return error;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1 || socket_connect(fd, path) == -1) {
		set_msg(NULL, "cannot connect to %s: %s", path,
		    strerror(errno));
		if (fd != -1)
			close(fd);
		return LOCKS_E_CONNECT;
	}
	/* Before hello: a stranger learns nothing, not even our label. */
	if (per_user && (error = check_peer(fd, path)) != LOCKS_OK) {
		close(fd);
		return error;
	}
	if ((error = conn_new(fd, path, &conn)) != LOCKS_OK) {
		set_msg(NULL, "out of memory");
		close(fd);
		return error;
	}
	if ((error = conn_hello(conn, client)) != LOCKS_OK) {
		set_msg(NULL, "%s", conn->msg);
		locks_close(conn);
		return error;
	}
	*ret_conn = conn;
	return LOCKS_OK;
}

/* Close the connection; the daemon releases all it held or awaited. */
void
locks_close(locks_conn *conn)
{
	if (conn == NULL)
		return;
	close(conn->fd);
	if (conn->tok != NULL)
		json_tokener_free(conn->tok);
	while (conn->nheld > 0)
		free(conn->held[--conn->nheld]);
	free(conn->held);
	free(conn->buf);
	free(conn->path);
	free(conn);
}

/* Return the socket path this connection was made to. */
const char *
locks_socket_path(const locks_conn *conn)
{
	return conn->path;
}

/* Check a lock name here, so a bad one costs no round trip. */
static int
check_name(locks_conn *conn, const char *name)
{
	if (name == NULL || !proto_name_valid(name, strlen(name))) {
		set_msg(conn, "name must be 1 to %d bytes of "
		    "[A-Za-z0-9._:@+-], not starting with '.'",
		    PROTO_MAX_NAME);
		return LOCKS_E_INVALID_NAME;
	}
	return LOCKS_OK;
}

/* Check acquire options against the protocol's ranges. */
static int
check_acquire_opts(locks_conn *conn, const struct locks_acquire_opts *opts)
{
	if (opts->mode != LOCKS_EXCLUSIVE && opts->mode != LOCKS_SHARED) {
		set_msg(conn, "mode must be exclusive or shared");
		return LOCKS_E_INVAL;
	}
	if (isnan(opts->timeout) || opts->timeout > PROTO_MAX_SECONDS) {
		set_msg(conn, "timeout must be at most %g seconds",
		    PROTO_MAX_SECONDS);
		return LOCKS_E_INVAL;
	}
	if (!(opts->notify_after >= 0 &&
	    opts->notify_after <= PROTO_MAX_SECONDS)) {
		set_msg(conn, "notify_after must be 0 to %g seconds",
		    PROTO_MAX_SECONDS);
		return LOCKS_E_INVAL;
	}
	if (opts->owner != NULL && strlen(opts->owner) > PROTO_MAX_LABEL) {
		set_msg(conn, "owner longer than %d bytes", PROTO_MAX_LABEL);
		return LOCKS_E_INVAL;
	}
	return LOCKS_OK;
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

/* Take the named lock, waiting as opts say; the token goes to ret_token. */
int
locks_acquire(locks_conn *conn, const char *name,
    const struct locks_acquire_opts *opts, int64_t *ret_token)
{
	static const struct locks_acquire_opts dflt = LOCKS_ACQUIRE_OPTS_INIT;
	struct proto_request	 req;
	struct blocking		 blk;
	struct json_object	*reply, *token;
	int64_t			 value;
	int			 error;

	if (conn == NULL) {
		set_msg(NULL, "no connection");
		return LOCKS_E_INVAL;
	}
	if (opts == NULL)
		opts = &dflt;
	if ((error = check_name(conn, name)) != LOCKS_OK ||
	    (error = check_acquire_opts(conn, opts)) != LOCKS_OK)
		return error;

	memset(&req, 0, sizeof req);
	req.op = PROTO_OP_ACQUIRE;
	req.name = name;
	req.mode = opts->mode == LOCKS_SHARED ? PROTO_SHARED :
	    PROTO_EXCLUSIVE;
	req.timeout = opts->timeout < 0 ? -1 : opts->timeout;
	/* Without a callback, ask for no blocking event at all. */
	req.notify_after = opts->on_blocking != NULL ? opts->notify_after :
	    PROTO_MAX_SECONDS;
	req.owner = opts->owner;
	blk.name = name;
	blk.cb = opts->on_blocking;
	blk.arg = opts->arg;
	if ((error = conn_transact_fast(conn, &req, &blk, &reply, NULL,
	    NULL, &value)) != LOCKS_OK)
		return error;
	if (reply != NULL && (error = reply_error(conn, reply)) != LOCKS_OK) {
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
		set_msg(conn, "acquire reply has no token");
		return conn_break(conn, LOCKS_E_PROTOCOL);
	}
	if (held_add(conn, name) != LOCKS_OK) {
		/* Untracked locks would defeat locks_held: give it back. */
		json_object_put(reply);
		set_msg(conn, "out of memory");
		return conn_break(conn, LOCKS_E_NOMEM);
	}
	if (ret_token != NULL)
		*ret_token = value;
	json_object_put(reply);
	return LOCKS_OK;
}

/* Release a lock this connection holds, or cancel its wait for it. */
int
locks_release(locks_conn *conn, const char *name)
{
	struct proto_request	 req;
	int			 error;

	if (conn == NULL) {
		set_msg(NULL, "no connection");
		return LOCKS_E_INVAL;
	}
	if ((error = check_name(conn, name)) != LOCKS_OK)
		return error;
	memset(&req, 0, sizeof req);
	req.op = PROTO_OP_RELEASE;
	req.name = name;
	error = conn_simple(conn, &req);
	if (error == LOCKS_OK || error == LOCKS_E_NOT_HELD)
		held_remove(conn, name);
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
 * is alive.  Between requests the daemon sends nothing, so EOF, a hang-up
 * or an error on the socket means locksd is gone and the locks with it.
 */
int
locks_check(locks_conn *conn)
{
	struct pollfd	 pfd;
	char		 byte;
	ssize_t		 n;

	if (conn == NULL) {
		set_msg(NULL, "no connection");
		return LOCKS_E_INVAL;
	}
	if (conn->broken)
		return LOCKS_E_LOST;
	pfd.fd = conn->fd;
	pfd.events = POLLIN | POLLRDHUP;
	if (poll(&pfd, 1, 0) <= 0)
		return LOCKS_OK;
	if (pfd.revents & (POLLHUP | POLLERR | POLLRDHUP | POLLNVAL))
		goto lost;
	n = recv(conn->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
	if (n > 0 || (n == -1 && (errno == EAGAIN || errno == EINTR)))
		return LOCKS_OK;
lost:
	set_msg(conn, "lost the connection to locksd at %s", conn->path);
	return conn_break(conn, LOCKS_E_LOST);
}

/* Whether this connection holds name and is still alive. */
int
locks_held(locks_conn *conn, const char *name)
{
	if (conn == NULL || name == NULL || held_find(conn, name) == -1)
		return 0;
	return locks_check(conn) == LOCKS_OK;
}

/* Make a round trip to check the daemon is alive. */
int
locks_ping(locks_conn *conn)
{
	struct proto_request	 req;

	if (conn == NULL) {
		set_msg(NULL, "no connection");
		return LOCKS_E_INVAL;
	}
	memset(&req, 0, sizeof req);
	req.op = PROTO_OP_PING;
	return conn_simple(conn, &req);
}

/* Return the lock's name. */
const char *
locks_lock_name(const locks_lock *lock)
{
	return lock->name;
}

/* Return how many holders the lock has. */
size_t
locks_lock_nholders(const locks_lock *lock)
{
	return lock->nholders;
}

/* Return holder i, or NULL past the end. */
const locks_holder *
locks_lock_holder(const locks_lock *lock, size_t i)
{
	return i < lock->nholders ? &lock->holders[i] : NULL;
}

/* Return how many waiters the lock has. */
size_t
locks_lock_nwaiters(const locks_lock *lock)
{
	return lock->nwaiters;
}

/* Return waiter i, or NULL past the end. */
const locks_holder *
locks_lock_waiter(const locks_lock *lock, size_t i)
{
	return i < lock->nwaiters ? &lock->waiters[i] : NULL;
}

/* Whether the holder is a process outside the broker. */
int
locks_holder_external(const locks_holder *h)
{
	return h->external;
}

/* Return the holder's process id. */
pid_t
locks_holder_pid(const locks_holder *h)
{
	return h->pid;
}

/* Return the holder's user id. */
uid_t
locks_holder_uid(const locks_holder *h)
{
	return h->uid;
}

/* Return the holder's group id. */
gid_t
locks_holder_gid(const locks_holder *h)
{
	return h->gid;
}

/* Return the holder's client label. */
const char *
locks_holder_client(const locks_holder *h)
{
	return h->client;
}

/* Return the owner text of the holder's acquire. */
const char *
locks_holder_owner(const locks_holder *h)
{
	return h->owner;
}

/* Return an external holder's command ("" when unknown). */
const char *
locks_holder_command(const locks_holder *h)
{
	return h->command;
}

/* Return the mode held or awaited. */
enum locks_mode
locks_holder_mode(const locks_holder *h)
{
	return h->mode;
}

/* Return when the hold (or wait) began, in unix seconds. */
double
locks_holder_since(const locks_holder *h)
{
	return h->since;
}

/* Return the holder's fencing token; 0 for a waiter. */
int64_t
locks_holder_token(const locks_holder *h)
{
	return h->token;
}

/* Decode a list reply's "locks" array into list. */
static int
list_decode(struct json_object *reply, locks_list *list)
{
	struct json_object	*array;
	size_t			 i, n;
	int			 error;

	if (!json_object_object_get_ex(reply, "locks", &array) ||
	    !json_object_is_type(array, json_type_array))
		return LOCKS_E_PROTOCOL;
	n = json_object_array_length(array);
	if (n > 0 && (list->locks = calloc(n, sizeof *list->locks)) == NULL)
		return LOCKS_E_NOMEM;
	for (i = 0; i < n; i++) {
		error = lock_decode(json_object_array_get_idx(array, i),
		    &list->locks[i]);
		if (error != LOCKS_OK)
			return error;
		list->count++;
	}
	return LOCKS_OK;
}

/*
 * Append the "locks" of one list reply to all; *ret_more says whether the
 * daemon has more, past the name it copies to last (of at least the size
 * of after's, which it must pass).
 */
static int
list_page_add(struct json_object *reply, struct json_object *all,
    const char *after, char *last, size_t size, int *ret_more)
{
	struct json_object	*locks, *more, *entry, *name;
	size_t			 i, n;

	if (!json_object_object_get_ex(reply, "locks", &locks) ||
	    !json_object_is_type(locks, json_type_array))
		return LOCKS_E_PROTOCOL;
	n = json_object_array_length(locks);
	for (i = 0; i < n; i++) {
		entry = json_object_array_get_idx(locks, i);
		json_object_array_add(all, json_object_get(entry));
	}
	*ret_more = json_object_object_get_ex(reply, "more", &more) &&
	    json_object_get_boolean(more);
	if (!*ret_more)
		return LOCKS_OK;
	/* A page must end past where it began, or paging would not end. */
	if (n == 0 || !json_object_object_get_ex(json_object_array_get_idx(
	    locks, n - 1), "name", &name) ||
	    !json_object_is_type(name, json_type_string) ||
	    (after != NULL && strcmp(json_object_get_string(name), after) <= 0) ||
	    (size_t)json_object_get_string_len(name) >= size)
		return LOCKS_E_PROTOCOL;
	memcpy(last, json_object_get_string(name),
	    (size_t)json_object_get_string_len(name) + 1);
	return LOCKS_OK;
}

/*
 * Ask for the list page by page (the daemon bounds each reply), into one
 * reply: the first, with every page's locks.  *ret_reply is the caller's.
 */
static int
list_fetch(locks_conn *conn, struct proto_request *req,
    struct json_object **ret_reply)
{
	struct json_object	*first = NULL, *reply, *all;
	char			 after[PROTO_MAX_NAME + 1];
	int			 error = LOCKS_OK, more = 1;

	if ((all = json_object_new_array()) == NULL)
		return LOCKS_E_NOMEM;
	while (more) {
		if ((error = conn_transact(conn, req, NULL, &reply, NULL,
		    NULL)) != LOCKS_OK)
			break;
		error = reply_error(conn, reply);
		if (error == LOCKS_OK)
			error = list_page_add(reply, all, req->after, after,
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

/* List the locks (name NULL: all of them); flags: LOCKS_LIST_ALL or 0. */
int
locks_list_query(locks_conn *conn, const char *name, int flags,
    locks_list **ret_list)
{
	struct proto_request	 req;
	struct json_object	*reply;
	locks_list		*list;
	int			 error;

	if (conn == NULL || ret_list == NULL) {
		set_msg(conn, "no connection or no result pointer");
		return LOCKS_E_INVAL;
	}
	if (name != NULL && (error = check_name(conn, name)) != LOCKS_OK)
		return error;
	if ((flags & ~LOCKS_LIST_ALL) != 0) {
		set_msg(conn, "unknown list flags 0x%x", (unsigned)flags);
		return LOCKS_E_INVAL;
	}
	memset(&req, 0, sizeof req);
	req.op = PROTO_OP_LIST;
	req.name = name;
	req.all = (flags & LOCKS_LIST_ALL) != 0;
	if ((error = list_fetch(conn, &req, &reply)) != LOCKS_OK) {
		if (error == LOCKS_E_PROTOCOL)
			set_msg(conn, "malformed list reply");
		return error;
	}
	if ((list = calloc(1, sizeof *list)) == NULL ||
	    (list->json = strdup(json_object_to_json_string_ext(reply,
	    JSON_C_TO_STRING_PLAIN))) == NULL)
		error = LOCKS_E_NOMEM;
	else
		error = list_decode(reply, list);
	json_object_put(reply);
	if (error != LOCKS_OK) {
		locks_list_free(list);
		set_msg(conn, error == LOCKS_E_NOMEM ? "out of memory" :
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

/* Return how many locks the list holds. */
size_t
locks_list_count(const locks_list *list)
{
	return list->count;
}

/* Return lock i of the list, or NULL past the end. */
const locks_lock *
locks_list_lock(const locks_list *list, size_t i)
{
	return i < list->count ? &list->locks[i] : NULL;
}

/* Return the daemon's list reply as one line of JSON. */
const char *
locks_list_json(const locks_list *list)
{
	return list->json;
}

/* Free a list and everything in it. */
void
locks_list_free(locks_list *list)
{
	size_t	 i;

	if (list == NULL)
		return;
	for (i = 0; i < list->count; i++)
		lock_clear(&list->locks[i]);
	free(list->locks);
	free(list->json);
	free(list);
}

/* Read an optional integer field of a reply; 0 when absent. */
static int64_t
reply_int(struct json_object *reply, const char *key)
{
	struct json_object	*value;

	if (!json_object_object_get_ex(reply, key, &value) ||
	    (!json_object_is_type(value, json_type_int) &&
	    !json_object_is_type(value, json_type_double)))
		return 0;
	return json_object_get_int64(value);
}

/* Read an optional number field of a reply; 0 when absent. */
static double
reply_double(struct json_object *reply, const char *key)
{
	struct json_object	*value;

	if (!json_object_object_get_ex(reply, key, &value) ||
	    (!json_object_is_type(value, json_type_int) &&
	    !json_object_is_type(value, json_type_double)))
		return 0;
	return json_object_get_double(value);
}

/* Fill status from a status reply. */
static int
status_decode(struct json_object *reply, locks_status *status)
{
	struct json_object	*value;
	const char		*version = "";

	if (json_object_object_get_ex(reply, "version", &value) &&
	    json_object_is_type(value, json_type_string))
		version = json_object_get_string(value);
	if (copy_string(version, &status->version) != LOCKS_OK)
		return LOCKS_E_NOMEM;
	status->uptime = reply_double(reply, "uptime");
	status->connections = reply_int(reply, "connections");
	status->locks_held = reply_int(reply, "locks_held");
	status->waiters = reply_int(reply, "waiters");
	status->acquired_total = reply_int(reply, "acquired_total");
	return LOCKS_OK;
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
		set_msg(conn, "no connection or no result pointer");
		return LOCKS_E_INVAL;
	}
	memset(&req, 0, sizeof req);
	req.op = PROTO_OP_STATUS;
	if ((error = conn_transact(conn, &req, NULL, &reply, &line,
	    &len)) != LOCKS_OK)
		return error;
	if ((error = reply_error(conn, reply)) != LOCKS_OK) {
		json_object_put(reply);
		return error;
	}
	if ((status = calloc(1, sizeof *status)) == NULL ||
	    (status->json = strndup(line, len)) == NULL ||
	    status_decode(reply, status) != LOCKS_OK) {
		json_object_put(reply);
		locks_status_free(status);
		set_msg(conn, "out of memory");
		return LOCKS_E_NOMEM;
	}
	json_object_put(reply);
	*ret_status = status;
	return LOCKS_OK;
}

/* Return the daemon's version. */
const char *
locks_status_version(const locks_status *status)
{
	return status->version;
}

/* Return the daemon's uptime in seconds. */
double
locks_status_uptime(const locks_status *status)
{
	return status->uptime;
}

/* Return how many clients are connected. */
int64_t
locks_status_connections(const locks_status *status)
{
	return status->connections;
}

/* Return how many grants are current. */
int64_t
locks_status_locks_held(const locks_status *status)
{
	return status->locks_held;
}

/* Return how many acquires are queued. */
int64_t
locks_status_waiters(const locks_status *status)
{
	return status->waiters;
}

/* Return how many grants the daemon has made since it started. */
int64_t
locks_status_acquired_total(const locks_status *status)
{
	return status->acquired_total;
}

/* Return the daemon's status reply as one line of JSON. */
const char *
locks_status_json(const locks_status *status)
{
	return status->json;
}

/* Free a status. */
void
locks_status_free(locks_status *status)
{
	if (status == NULL)
		return;
	free(status->version);
	free(status->json);
	free(status);
}
