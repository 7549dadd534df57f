/*
 * liblocks' transport: connect to the daemon's socket (checking who owns
 * a default one), send request lines, read reply lines, and the
 * transaction that waits for one request's final reply.  Every line that
 * is not that reply, during a transaction or between requests, is an
 * event for event.c or a line to drop: the daemon may speak at any time.
 */

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "liblocks.h"

#define CONN_READ_MIN	4096	/* free space for one read */
#define CONN_REQ_STACK	1024	/* most request lines fit */
#define CONN_DRAIN_READS 64	/* reads one conn_drain makes at most */
#define CONN_EMPTY	1	/* conn_fill: nothing to read just now */

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
 * Check the directory of a socket we must trust before we talk, as tmux
 * does: a directory, not a link to one, writable by its owner alone.
 * Anyone who could create entries in it could put their own socket
 * there.  A per-user socket's directory must also be the caller's own;
 * a system socket's owner, whoever root gave it to, is returned in
 * ret_owner for check_peer.
 */
static int
check_socket_dir(const char *path, enum conn_trust trust, uid_t *ret_owner)
{
	char		 dir[PATH_MAX];
	const char	*slash;
	struct stat	 sb;
	long		 me = (long)geteuid();

	if ((slash = strrchr(path, '/')) == NULL ||
	    (size_t)(slash - path) >= sizeof dir) {
		error_msg(NULL, "cannot check the directory of %s", path);
		return LOCKS_E_UNTRUSTED;
	}
	memcpy(dir, path, (size_t)(slash - path));
	dir[slash - path] = '\0';
	if (lstat(*dir != '\0' ? dir : "/", &sb) == -1) {
		error_msg(NULL, CONN_FAILED "%s: %s", path, strerror(errno));
		return LOCKS_E_CONNECT;
	}
	if (S_ISLNK(sb.st_mode))
		error_msg(NULL, "%s is a symbolic link, not a directory; "
		    "refusing to use its socket", dir);
	else if (!S_ISDIR(sb.st_mode))
		error_msg(NULL, "%s is not a directory; refusing to use its "
		    "socket", dir);
	else if (trust == CONN_TRUST_USER && (long)sb.st_uid != me)
		error_msg(NULL, "%s is owned by uid %ld, not you (%ld); "
		    "refusing to use its socket", dir, (long)sb.st_uid, me);
	else if ((sb.st_mode & (S_IWGRP | S_IWOTH)) != 0)
		error_msg(NULL, "%s is writable by %s (mode %04o); refusing to "
		    "use its socket", dir, (sb.st_mode & S_IWOTH) != 0 ?
		    "others" : "its group", (unsigned)(sb.st_mode & 07777));
	else {
		*ret_owner = sb.st_uid;
		return LOCKS_OK;
	}
	return LOCKS_E_UNTRUSTED;
}

/*
 * Check who serves the socket: for a per-user one, us or root; for the
 * system one, root (systemd's socket activation) or the owner of its
 * directory (the locksd user), who could replace the socket anyway.
 */
static int
check_peer(int fd, const char *path, enum conn_trust trust, uid_t dir_owner)
{
	struct ucred	 cred;
	socklen_t	 len = sizeof cred;
	long		 me = (long)geteuid();

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == -1) {
		error_msg(NULL, "cannot learn who serves %s: %s", path,
		    strerror(errno));
		return LOCKS_E_UNTRUSTED;
	}
	if (cred.uid == 0)
		return LOCKS_OK;
	if (trust == CONN_TRUST_USER && (long)cred.uid != me) {
		error_msg(NULL, "%s is served by uid %ld (pid %ld), not by you "
		    "(%ld) or root; refusing to talk to it", path,
		    (long)cred.uid, (long)cred.pid, me);
		return LOCKS_E_UNTRUSTED;
	}
	if (trust == CONN_TRUST_SYSTEM && cred.uid != dir_owner) {
		error_msg(NULL, "%s is served by uid %ld (pid %ld), not by "
		    "root or the owner of its directory (uid %ld); refusing to "
		    "talk to it", path, (long)cred.uid, (long)cred.pid,
		    (long)dir_owner);
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

/*
 * Connect to the socket at path; unless the caller chose it, first check
 * its directory and then the daemon on it, as trust says.  Says nothing
 * yet.
 */
int
conn_open(const char *path, enum conn_trust trust, locks_conn **ret_conn)
{
	uid_t	 dir_owner = 0;
	int	 fd, error;

	if (trust != CONN_TRUST_CALLER &&
	    (error = check_socket_dir(path, trust, &dir_owner)) != LOCKS_OK)
		return error;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1 || socket_connect(fd, path) == -1) {
		error_msg(NULL, CONN_FAILED "%s: %s", path, strerror(errno));
		if (fd != -1)
			close(fd);
		return LOCKS_E_CONNECT;
	}
	/* Before hello: a stranger learns nothing, not even our label. */
	if (trust != CONN_TRUST_CALLER &&
	    (error = check_peer(fd, path, trust, dir_owner)) != LOCKS_OK) {
		close(fd);
		return error;
	}
	if ((error = conn_new(fd, path, ret_conn)) != LOCKS_OK) {
		error_msg(NULL, "out of memory");
		close(fd);
		return error;
	}
	return LOCKS_OK;
}

/* Close the socket and free the connection. */
void
conn_free(locks_conn *conn)
{
	if (conn == NULL)
		return;
	close(conn->fd);
	if (conn->tok != NULL)
		json_tokener_free(conn->tok);
	while (conn->nheld > 0)
		free(conn->held[--conn->nheld]);
	free(conn->held);
	contended_forget_all(conn);
	free(conn->buf);
	free(conn->path);
	free(conn);
}

/* Mark the connection unusable, so the daemon drops what it held for us. */
int
conn_break(locks_conn *conn, int error)
{
	if (!conn->broken) {
		conn->broken = 1;
		shutdown(conn->fd, SHUT_RDWR);
	}
	return error;
}

/*
 * Send the first bytes of a line with the descriptors the request
 * carries (SCM_RIGHTS), which the daemon gives to the line they came on.
 */
static ssize_t
conn_send_fds(locks_conn *conn, const char *line, size_t len)
{
	union {
		struct cmsghdr	 hdr;
		char		 space[CMSG_SPACE(sizeof(int) *
				    PROTO_MAX_FDS)];
	}		 control;
	struct iovec	 iov = { (void *)line, len };
	struct msghdr	 msg = { 0 };
	struct cmsghdr	*c;
	size_t		 fds_len = sizeof(int) * conn->nsend_fds;

	memset(&control, 0, sizeof control);
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = &control;
	msg.msg_controllen = CMSG_SPACE(fds_len);
	c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(fds_len);
	memcpy(CMSG_DATA(c), conn->send_fds, fds_len);
	return sendmsg(conn->fd, &msg, MSG_NOSIGNAL);
}

/* Send one whole line, retrying short writes and EINTR. */
static int
conn_send_line(locks_conn *conn, const char *line, size_t len)
{
	ssize_t	 n;

	while (len > 0) {
		if (conn->nsend_fds > 0) {
			if ((n = conn_send_fds(conn, line, len)) > 0)
				conn->nsend_fds = 0;
		} else
			n = send(conn->fd, line, len, MSG_NOSIGNAL);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			/* Not broken yet: the daemon may have said why. */
			error_msg(conn, "connection to the daemon lost: %s",
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
	char	 stack[CONN_REQ_STACK], *line = stack;
	size_t	 len;
	int	 error;

	len = proto_request_format(stack, sizeof stack, req, conn->next_id);
	if (len > sizeof stack) {
		/* Long names or labels, escaped: format again on the heap. */
		if ((line = malloc(len)) == NULL) {
			error_msg(conn, "out of memory");
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

/* Make room for at least CONN_READ_MIN more bytes in the read buffer. */
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
	if (conn->cap - conn->len >= CONN_READ_MIN)
		return LOCKS_OK;
	cap = conn->cap == 0 ? 2 * CONN_READ_MIN : conn->cap * 2;
	while (cap - conn->len < CONN_READ_MIN)
		cap *= 2;
	if ((buf = realloc(conn->buf, cap)) == NULL) {
		error_msg(conn, "out of memory");
		return conn_break(conn, LOCKS_E_NOMEM);
	}
	conn->buf = buf;
	conn->cap = cap;
	return LOCKS_OK;
}

/*
 * Take the next whole line (without its LF) out of what was read; 0 if
 * none is there yet.  The line stays valid until the next read.
 */
static int
conn_next_line(locks_conn *conn, const char **ret_line, size_t *ret_len)
{
	char	*nl;

	nl = conn->len > conn->scan ? memchr(conn->buf + conn->scan, '\n',
	    conn->len - conn->scan) : NULL;
	if (nl == NULL) {
		conn->scan = conn->len;
		return 0;
	}
	*ret_line = conn->buf + conn->off;
	*ret_len = (size_t)(nl - *ret_line);
	conn->off = conn->scan = (size_t)(nl - conn->buf) + 1;
	return 1;
}

/*
 * Read once from the socket into the buffer, with recv's flags.  Returns
 * LOCKS_OK (also after EINTR: call again), CONN_EMPTY when MSG_DONTWAIT
 * found nothing, or an error that broke the connection.
 */
static int
conn_fill(locks_conn *conn, int flags)
{
	ssize_t	 n;
	int	 error;

	if (conn->len - conn->off > LOCKS_MAX_REPLY) {
		error_msg(conn, "reply longer than %d bytes", LOCKS_MAX_REPLY);
		return conn_break(conn, LOCKS_E_PROTOCOL);
	}
	if ((error = conn_make_room(conn)) != LOCKS_OK)
		return error;
	n = recv(conn->fd, conn->buf + conn->len, conn->cap - conn->len,
	    flags);
	if (n == -1 && errno == EINTR)
		return LOCKS_OK;
	if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return CONN_EMPTY;
	if (n == -1) {
		error_msg(conn, "connection to the daemon lost: %s",
		    strerror(errno));
		return conn_break(conn, LOCKS_E_LOST);
	}
	if (n == 0) {
		error_msg(conn, "the daemon closed the connection");
		return conn_break(conn, LOCKS_E_LOST);
	}
	conn->len += (size_t)n;
	return LOCKS_OK;
}

/*
 * Read the next line, waiting for it.  A line over LOCKS_MAX_REPLY bytes
 * is a protocol error.
 */
static int
conn_read_line(locks_conn *conn, const char **ret_line, size_t *ret_len)
{
	int	 error;

	while (!conn_next_line(conn, ret_line, ret_len)) {
		if ((error = conn_fill(conn, 0)) != LOCKS_OK)
			return error;
	}
	return LOCKS_OK;
}

/* Parse a line that must be a JSON object; anything else breaks us. */
static int
conn_parse(locks_conn *conn, const char *line, size_t len,
    struct json_object **ret_obj)
{
	struct json_object	*obj;

	if (proto_parse_line(conn->tok, line, len, &obj) == -1)
		obj = NULL;
	if (obj == NULL || !json_object_is_type(obj, json_type_object)) {
		json_object_put(obj);
		error_msg(conn, "the daemon sent a line that is not a JSON "
		    "object");
		return conn_break(conn, LOCKS_E_PROTOCOL);
	}
	*ret_obj = obj;
	return LOCKS_OK;
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

/*
 * Read lines up to the next final reply, skipping blank lines and events
 * (an event may still sit in the buffer from an earlier reply).  Returns
 * the reply, or NULL at the end of input or on a line that is not JSON.
 */
static struct json_object *
conn_read_final(locks_conn *conn)
{
	struct json_object	*reply;
	const char		*line;
	size_t			 len;

	while (conn_read_line(conn, &line, &len) == LOCKS_OK) {
		if (proto_blank(line, len))
			continue;
		reply = NULL;
		if (proto_parse_line(conn->tok, line, len, &reply) == -1 ||
		    !json_object_is_type(reply, json_type_object)) {
			json_object_put(reply);
			return NULL;
		}
		if (proto_reply_is_final(reply))
			return reply;
		json_object_put(reply);
	}
	return NULL;
}

/*
 * A send failed because the daemon closed the connection: read the error
 * line it may have sent first (permission_denied, limit), else say lost.
 */
static int
conn_read_refusal(locks_conn *conn)
{
	struct json_object	*reply;
	const char		*msg;
	char			 saved[LOCKS_MSG_MAX];
	int			 error = LOCKS_E_LOST;

	snprintf(saved, sizeof saved, "%s", conn->msg);
	if ((reply = conn_read_final(conn)) != NULL &&
	    (error = -(int)proto_reply_error_decode(reply, &msg)) != LOCKS_OK)
		error_msg(conn, "%s", msg);
	else {
		error = LOCKS_E_LOST;
		error_msg(conn, "%s", saved);
	}
	json_object_put(reply);
	return conn_break(conn, error);
}

/*
 * Read lines until the final reply to request id.  Events go to event.c,
 * with blk (may be NULL) only for those of this request; final replies
 * to other ids are dropped.  On success the reply is the caller's, and
 * *ret_line (if not NULL) is its raw text, valid until the next read on
 * this connection.  With ret_token, a plain success reply is taken
 * without json-c: *ret_reply is then NULL and *ret_token the grant's
 * token (0 for a reply without one).
 */
static int
conn_read_reply(locks_conn *conn, int64_t id, const struct blocking *blk,
    struct json_object **ret_reply, const char **ret_line, size_t *ret_len,
    int64_t *ret_token)
{
	struct json_object	*reply;
	const char		*line;
	size_t			 len;
	int			 error, ours;

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
		if ((error = conn_parse(conn, line, len, &reply)) != LOCKS_OK)
			return error;
		ours = reply_has_id(reply, id);
		if (ours && proto_reply_is_final(reply))
			break;
		error = LOCKS_OK;
		if (!proto_reply_is_final(reply))
			error = event_dispatch(conn, reply, ours ? blk : NULL);
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

static int	conn_unsolicited(locks_conn *, const char *, size_t);

/*
 * Handle the whole lines that came in behind a reply, so that an event
 * read along with it is not left where poll(2) cannot see it.  The
 * reply's raw line stays valid: taking lines moves no memory.  A bad line
 * breaks the connection, which the next call reports.
 */
static void
conn_handle_buffered(locks_conn *conn)
{
	const char	*line;
	size_t		 len;

	while (!conn->broken && conn_next_line(conn, &line, &len))
		(void)conn_unsolicited(conn, line, len);
}

/* Send a request and wait for its final reply, as conn_read_reply says. */
static int
conn_wait_reply(locks_conn *conn, const struct proto_request *req,
    const struct blocking *blk, struct json_object **ret_reply,
    const char **ret_line, size_t *ret_len, int64_t *ret_token)
{
	int64_t	 id;
	int	 error;

	if (conn->broken) {
		error_msg(conn, "the connection is unusable after an "
		    "earlier error");
		return LOCKS_E_LOST;
	}
	/*
	 * A request from a callback would take the waiting one's reply, or
	 * read on under conn_drain's feet.
	 */
	if (conn->waiting || conn->in_contended) {
		error_msg(conn, "a request was made from inside a callback of "
		    "another request on the same connection");
		return LOCKS_E_INVAL;
	}
	if ((error = conn_send_request(conn, req, &id)) != LOCKS_OK) {
		if (error == LOCKS_E_LOST)
			return conn_read_refusal(conn);
		return error;
	}
	/* Lines read meanwhile are this request's, not conn_drain's. */
	conn->waiting = 1;
	error = conn_read_reply(conn, id, blk, ret_reply, ret_line, ret_len,
	    ret_token);
	conn->waiting = 0;
	if (error == LOCKS_OK)
		conn_handle_buffered(conn);
	return error;
}

/* Send a request and return its parsed final reply (see conn_read_reply). */
int
conn_transact(locks_conn *conn, const struct proto_request *req,
    const struct blocking *blk, struct json_object **ret_reply,
    const char **ret_line, size_t *ret_len)
{
	return conn_wait_reply(conn, req, blk, ret_reply, ret_line, ret_len,
	    NULL);
}

/*
 * The same, taking a plain success reply without json-c: then *ret_reply
 * is NULL and *ret_token the grant's token, 0 for a reply without one.
 */
int
conn_transact_fast(locks_conn *conn, const struct proto_request *req,
    const struct blocking *blk, struct json_object **ret_reply,
    int64_t *ret_token)
{
	return conn_wait_reply(conn, req, blk, ret_reply, NULL, NULL,
	    ret_token);
}

/*
 * Turn a final reply's failure into our error, keeping the daemon's
 * message on the connection.  LOCKS_OK when the reply says ok.
 */
int
conn_reply_error(locks_conn *conn, struct json_object *reply)
{
	enum proto_error	 error;
	const char		*msg;

	error = proto_reply_error_decode(reply, &msg);
	if (error == PROTO_OK)
		return LOCKS_OK;
	error_msg(conn, "%s", msg);
	return -(int)error;
}

/* Run a request whose reply carries nothing but ok. */
int
conn_simple(locks_conn *conn, const struct proto_request *req)
{
	struct json_object	*reply;
	int64_t			 token;
	int			 error;

	if ((error = conn_transact_fast(conn, req, NULL, &reply,
	    &token)) != LOCKS_OK || reply == NULL)
		return error;
	error = conn_reply_error(conn, reply);
	json_object_put(reply);
	return error;
}

/*
 * Handle one line that came between requests: an event goes to event.c,
 * and a blank line or a final reply no request awaits is dropped.
 */
static int
conn_unsolicited(locks_conn *conn, const char *line, size_t len)
{
	struct json_object	*obj;
	int			 error = LOCKS_OK;

	if (proto_blank(line, len))
		return LOCKS_OK;
	if ((error = conn_parse(conn, line, len, &obj)) != LOCKS_OK)
		return error;
	if (!proto_reply_is_final(obj))
		error = event_dispatch(conn, obj, NULL);
	json_object_put(obj);
	return error;
}

/*
 * Read without blocking what the daemon sent between requests, and handle
 * each whole line, so a pushed event leaves the socket quiet again instead
 * of readable forever.  LOCKS_OK when nothing more is there (or after
 * CONN_DRAIN_READS reads, so a chatty daemon cannot hold us: the socket
 * stays readable and the caller comes back); an error once the daemon
 * has closed the connection or sent nonsense.
 */
int
conn_drain(locks_conn *conn)
{
	const char	*line;
	size_t		 len;
	int		 error, reads;

	/* Called back from inside a transaction: leave its lines to it. */
	if (conn->waiting)
		return LOCKS_OK;
	for (reads = 0;; reads++) {
		while (conn_next_line(conn, &line, &len)) {
			if ((error = conn_unsolicited(conn, line,
			    len)) != LOCKS_OK)
				return error;
		}
		if (reads == CONN_DRAIN_READS)
			return LOCKS_OK;
		if ((error = conn_fill(conn, MSG_DONTWAIT)) == CONN_EMPTY)
			return LOCKS_OK;
		if (error != LOCKS_OK)
			return error;
	}
}
