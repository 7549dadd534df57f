/*
 * One client connection: its peer credentials, line framing, output with
 * backpressure, and its teardown.  Requests are answered in request.c.
 *
 * A connection is OPEN, or CLOSING: it sent a final error (too_large),
 * reads nothing more, and is freed once its output is flushed or stalls.
 *
 * Replies are staged in the connection's own buffer and flushed once per
 * pass of the event loop: with nothing else queued, one writev(2) sends
 * them all, and the bufferevent (with its EV_WRITE bookkeeping) only gets
 * what the socket would not take.
 */

#include <sys/socket.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "daemon.h"

#define OUTPUT_HIGH	(1024 * 1024)	/* stop reading above this backlog */
#define OUTPUT_LOW	(256 * 1024)	/* resume reading below this */
#define CLOSING_SECS	10		/* flush time for a closing conn */

enum conn_state {
	CONN_OPEN,
	CONN_CLOSING
};

struct conn {
	TAILQ_ENTRY(conn)	 entry;
	struct server		*srv;
	struct bufferevent	*bev;
	struct json_tokener	*tok;
	struct peer		 peer;
	char			*client;
	struct acquire_list	 acquires;
	enum conn_state		 state;
	int			 throttled;	/* reading paused for output */
	struct evbuffer		*staged;	/* replies not yet flushed */
	struct event		*flush_ev;	/* flushes staged, once a pass */
	int			 flush_armed;
};

static void	conn_read_cb(struct bufferevent *, void *);
static void	conn_write_cb(struct bufferevent *, void *);
static void	conn_event_cb(struct bufferevent *, short, void *);
static void	conn_close_with(struct conn *, enum proto_error, const char *);
static void	conn_flush_cb(evutil_socket_t, short, void *);

/* Read the peer's pid, uid and gid from the kernel, not from the client. */
static int
conn_read_peer(int fd, struct peer *ret_peer)
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
 * Set up a connection over a bufferevent (a socket's, or one end of a
 * pair in the fuzzer); NULL if out of memory, with bev freed.
 */
struct conn *
conn_new(struct server *srv, struct bufferevent *bev, const struct peer *peer)
{
	struct conn	*conn;

	if ((conn = calloc(1, sizeof *conn)) == NULL ||
	    (conn->tok = proto_tokener_new()) == NULL ||
	    (conn->client = strdup("")) == NULL ||
	    (conn->staged = evbuffer_new()) == NULL ||
	    (conn->flush_ev = event_new(server_base(srv), -1, 0,
	    conn_flush_cb, conn)) == NULL) {
		log_warnx("out of memory accepting a connection");
		if (conn != NULL) {
			if (conn->tok != NULL)
				json_tokener_free(conn->tok);
			if (conn->staged != NULL)
				evbuffer_free(conn->staged);
			free(conn->client);
		}
		free(conn);
		bufferevent_free(bev);
		return NULL;
	}
	conn->srv = srv;
	conn->bev = bev;
	conn->peer = *peer;
	TAILQ_INIT(&conn->acquires);
	bufferevent_setcb(bev, conn_read_cb, conn_write_cb, conn_event_cb,
	    conn);
	/* Never buffer more than one maximal line of unread input. */
	bufferevent_setwatermark(bev, EV_READ, 0, PROTO_MAX_LINE + 2);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	TAILQ_INSERT_TAIL(server_conns(srv), conn, entry);
	server_conn_opened(srv);
	return conn;
}

/*
 * Set up a connection for an accepted socket.  A peer the daemon does not
 * admit gets one error line, and the connection closes once it is sent.
 */
void
conn_accept(struct server *srv, int fd)
{
	struct bufferevent	*bev;
	struct conn		*conn;
	struct peer		 peer;
	enum proto_error	 error;
	const char		*msg;

	if (conn_read_peer(fd, &peer) == -1) {
		log_warn("SO_PEERCRED");
		close(fd);
		return;
	}
	bev = bufferevent_socket_new(server_base(srv), fd,
	    BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		log_warnx("out of memory accepting a connection");
		close(fd);
		return;
	}
	if ((conn = conn_new(srv, bev, &peer)) == NULL)
		return;
	error = server_admit(srv, fd, &peer, &msg);
	if (error != PROTO_OK) {
		log_warnx("refused connection from uid %ld pid %ld: %s",
		    (long)peer.uid, (long)peer.pid, msg);
		conn_close_with(conn, error, msg);
		return;
	}
	log_debug("connection from pid %ld uid %ld", (long)peer.pid,
	    (long)peer.uid);
}

/*
 * Release everything the connection held or awaited, then free it.  The
 * caller must not touch conn afterwards; bufferevent_free is safe from
 * within the bufferevent's own callbacks.
 */
static void
conn_free(struct conn *conn)
{
	struct server	*srv = conn->srv;

	log_debug("connection from pid %ld closed", (long)conn->peer.pid);
	TAILQ_REMOVE(server_conns(srv), conn, entry);
	request_drop_all(conn);
	bufferevent_free(conn->bev);
	event_free(conn->flush_ev);
	evbuffer_free(conn->staged);
	json_tokener_free(conn->tok);
	free(conn->client);
	free(conn);
	server_conn_closed(srv);
}

/* Free every connection, at shutdown. */
void
conn_free_all(struct conn_list *conns)
{
	struct conn	*conn;

	while ((conn = TAILQ_FIRST(conns)) != NULL)
		conn_free(conn);
}

/* Hand staged replies to the bufferevent, which will write them. */
static void
conn_stage_out(struct conn *conn)
{
	struct evbuffer	*output = bufferevent_get_output(conn->bev);

	if (evbuffer_get_length(conn->staged) > 0 &&
	    evbuffer_add_buffer(output, conn->staged) == -1)
		log_warnx("out of memory queueing a reply");
}

/*
 * Send the staged replies: straight to the socket in one writev when the
 * bufferevent has nothing queued (the common case), else after what it
 * has.  A write error is left for the bufferevent to find.
 */
static void
conn_flush(struct conn *conn)
{
	struct evbuffer	*output = bufferevent_get_output(conn->bev);
	evutil_socket_t	 fd = bufferevent_getfd(conn->bev);

	if (evbuffer_get_length(conn->staged) == 0)
		return;
	if (fd != -1 && conn->state == CONN_OPEN &&
	    evbuffer_get_length(output) == 0)
		evbuffer_write(conn->staged, fd);
	conn_stage_out(conn);
}

static void
conn_flush_cb(evutil_socket_t fd, short events, void *arg)
{
	struct conn	*conn = arg;

	(void)fd;
	(void)events;
	conn->flush_armed = 0;
	conn_flush(conn);
}

/* Flush after the current callbacks, once however many replies come. */
static void
conn_arm_flush(struct conn *conn)
{
	if (conn->flush_armed)
		return;
	conn->flush_armed = 1;
	event_active(conn->flush_ev, EV_TIMEOUT, 0);
}

/* Queue one message (taking ownership of it) as one line of output. */
void
conn_send(struct conn *conn, struct json_object *msg)
{
	const char	*text;
	size_t		 len;

	text = proto_serialize(msg, &len);
	if (evbuffer_add(conn->staged, text, len) == -1 ||
	    evbuffer_add(conn->staged, "\n", 1) == -1)
		log_warnx("out of memory queueing a reply");
	json_object_put(msg);
	conn_arm_flush(conn);
}

/* Queue bytes already formatted as whole lines. */
void
conn_write(struct conn *conn, const char *text, size_t len)
{
	if (evbuffer_add(conn->staged, text, len) == -1)
		log_warnx("out of memory queueing a reply");
	conn_arm_flush(conn);
}

/*
 * Stop reading, drop every lock and wait of the connection at once, and
 * free it when its output is flushed (or after CLOSING_SECS of stall).
 */
static void
conn_start_closing(struct conn *conn)
{
	struct timeval	 tv = { CLOSING_SECS, 0 };

	conn_stage_out(conn);
	conn->state = CONN_CLOSING;
	bufferevent_disable(conn->bev, EV_READ);
	bufferevent_setwatermark(conn->bev, EV_WRITE, 0, 0);
	bufferevent_set_timeouts(conn->bev, NULL, &tv);
	request_drop_all(conn);
}

/* Send a final error and close once it is flushed. */
static void
conn_close_with(struct conn *conn, enum proto_error error, const char *msg)
{
	conn_send(conn, proto_reply_error(NULL, error, msg));
	conn_start_closing(conn);
}

/* Parse one request line and dispatch it. */
static void
conn_handle_line(struct conn *conn, const char *line, size_t len)
{
	struct proto_scratch	 scratch;
	struct proto_request	 r;
	struct json_object	*obj;
	enum proto_error	 error;
	const char		*msg = NULL;

	if (len == 0 || strspn(line, " \t\r") >= len)
		return;
	error = proto_request_parse(conn->tok, line, len, &scratch, &r, &obj,
	    &msg);
	request_dispatch(conn, &r, error, msg);
	json_object_put(obj);
}

/* Pause reading while the client is not reading its replies. */
static int
conn_throttle(struct conn *conn)
{
	struct evbuffer	*output = bufferevent_get_output(conn->bev);

	if (evbuffer_get_length(output) + evbuffer_get_length(conn->staged) <=
	    OUTPUT_HIGH)
		return 0;
	/* The backlog must sit in the bufferevent to wake us when drained. */
	conn_stage_out(conn);
	conn->throttled = 1;
	bufferevent_disable(conn->bev, EV_READ);
	bufferevent_setwatermark(conn->bev, EV_WRITE, OUTPUT_LOW, 0);
	return 1;
}

/* Handle every complete line in the input, in order. */
static void
conn_process_input(struct conn *conn)
{
	struct evbuffer		*input = bufferevent_get_input(conn->bev);
	struct evbuffer_ptr	 eol;
	unsigned char		*line;
	size_t			 eol_len;

	while (conn->state == CONN_OPEN && !conn_throttle(conn)) {
		eol = evbuffer_search_eol(input, NULL, &eol_len,
		    EVBUFFER_EOL_LF);
		if (eol.pos == -1) {
			if (evbuffer_get_length(input) > PROTO_MAX_LINE)
				break;
			return;
		}
		if ((size_t)eol.pos > PROTO_MAX_LINE)
			break;
		line = evbuffer_pullup(input, eol.pos + 1);
		conn_handle_line(conn, (const char *)line, (size_t)eol.pos);
		evbuffer_drain(input, (size_t)eol.pos + 1);
	}
	if (conn->state == CONN_OPEN && !conn->throttled)
		conn_close_with(conn, PROTO_E_TOO_LARGE,
		    "request line longer than 65536 bytes");
}

static void
conn_read_cb(struct bufferevent *bev, void *arg)
{
	(void)bev;
	conn_process_input(arg);
}

/* Output drained below the low mark: resume, or finish closing. */
static void
conn_write_cb(struct bufferevent *bev, void *arg)
{
	struct conn	*conn = arg;

	if (conn->state == CONN_CLOSING) {
		if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
			conn_free(conn);
		return;
	}
	if (conn->throttled) {
		conn->throttled = 0;
		bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
		bufferevent_enable(bev, EV_READ);
		conn_process_input(conn);
	}
}

/*
 * EOF, error or a stalled close: the connection is gone.  After a clean
 * EOF (a half-close) its locks go at once, but pending replies still flush.
 */
static void
conn_event_cb(struct bufferevent *bev, short events, void *arg)
{
	struct conn	*conn = arg;

	if ((events & BEV_EVENT_EOF) && conn->state == CONN_OPEN &&
	    evbuffer_get_length(bufferevent_get_output(bev)) +
	    evbuffer_get_length(conn->staged) > 0) {
		conn_start_closing(conn);
		return;
	}
	if (events & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))
		conn_free(conn);
}

/* The server this connection belongs to. */
struct server *
conn_server(struct conn *conn)
{
	return conn->srv;
}

/* The peer's credentials, read at accept. */
const struct peer *
conn_peer(const struct conn *conn)
{
	return &conn->peer;
}

/* The label the client gave in hello, or "". */
const char *
conn_client(const struct conn *conn)
{
	return conn->client;
}

/* Replace the client label; -1 if out of memory. */
int
conn_set_client(struct conn *conn, const char *client)
{
	char	*copy;

	if ((copy = strdup(client)) == NULL)
		return -1;
	free(conn->client);
	conn->client = copy;
	return 0;
}

/* The connection's acquires, waiting and held. */
struct acquire_list *
conn_acquires(struct conn *conn)
{
	return &conn->acquires;
}
