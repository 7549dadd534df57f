/*
 * One client connection's transport: line framing, output with
 * backpressure, and its teardown.  It knows no requests: each line goes to
 * the owner's line callback (session.c), and the freeing rule is in
 * daemon.h.
 *
 * A connection is OPEN, or CLOSING: it sent a final error (too_large) or
 * saw EOF, reads nothing more, and is freed once its output is flushed or
 * stalls.
 *
 * The socket is driven with plain events rather than a bufferevent, so a
 * request costs one read(2) and its reply one write(2), with no FIONREAD
 * probe and no per-read bookkeeping.  Reads land in one buffer
 * shared by all connections; only the unfinished tail of a line is copied
 * to the connection.  Replies made while a connection handles its own
 * input gather in one shared buffer too, written in one write(2) when
 * that input is done; only what the socket will not take then is copied
 * to the connection's output buffer.  Replies to other connections (a
 * grant after another's release, a timeout) queue in their output buffer
 * and are flushed once per pass of the event loop.
 */

#include <sys/socket.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "daemon.h"

#define CLOSING_SECS	10		/* flush time for a closing conn */
#define READ_SIZE	(64 * 1024)	/* most bytes taken in one read */
#define REPLY_SIZE	(16 * 1024)	/* replies gathered for one write */
#define PARTIAL_MAX	(PROTO_MAX_LINE + 1)	/* longest line and its \n */
#define LINES_PER_PASS	64		/* requests handled per loop pass */
#define PASS_SECS	0.01		/* and the time they may take */
#define IO_RETRIABLE(e)	((e) == EAGAIN || (e) == EWOULDBLOCK || (e) == EINTR)

/*
 * The descriptors of one read, for the line holding byte at of the input
 * kept.  A read ends with the data its descriptors came on, so groups
 * wait only for a line still incomplete, and two are the most a client
 * sending one request per sendmsg(2) can have waiting.
 */
#define CONN_FD_GROUPS	4

struct conn_fds {
	int			 fd[PROTO_MAX_FDS];
	size_t			 n;		/* came; past PROTO_MAX_FDS,
						   the rest were closed */
	size_t			 at;
};

enum conn_state {
	CONN_OPEN,
	CONN_CLOSING
};

struct conn {
	struct event_base	*base;
	int			 fd;
	size_t			 output_high;	/* unread bytes that throttle */
	const struct conn_cb	*cb;
	void			*cb_arg;
	struct conn_counters	*counters;	/* the owner's, or NULL */
	struct event		*read_ev;	/* persistent while reading */
	struct event		*write_ev;	/* while output is backed up */
	struct event		*flush_ev;	/* flushes out, once a pass */
	struct event		*more_ev;	/* goes on with kept input; made
						   when a pipeline first needs it */
	enum conn_state		 state;
	int			 throttled;	/* reading paused for output */
	int			 more;		/* lines left for a later pass */
	int			 in_input;	/* handling its own input */
	int			 flush_armed;
	struct evbuffer		*out;		/* replies not yet written */
	char			*partial;	/* input not yet handled */
	size_t			 partial_len;
	size_t			 partial_size;
	size_t			 partial_scanned; /* of it, known without \n */
	struct conn_fds		 fds[CONN_FD_GROUPS]; /* by position */
	size_t			 nfd_groups;
	int			 line_has_fds;	/* fds[0] is the handled line's */
};

/*
 * The one piece of global state in the daemon: the buffers every
 * connection shares.  They are safe to share because the event loop runs
 * one callback at a time and a connection is done with them before its
 * callback returns; they are static so that the hot path reaches them
 * without a pointer chase, and 80 KiB is never allocated per connection.
 */

/* Every connection reads into this first: the loop runs one at a time. */
static char	 conn_rbuf[READ_SIZE];

/* Replies to the connection handling its input, while its output is empty. */
static char		 conn_reply[REPLY_SIZE];
static size_t		 conn_reply_len;
static struct conn	*conn_reply_owner;

static void	conn_read_cb(evutil_socket_t, short, void *);
static void	conn_write_cb(evutil_socket_t, short, void *);
static void	conn_flush_cb(evutil_socket_t, short, void *);
static void	conn_more_cb(evutil_socket_t, short, void *);
static void	conn_keep_fds(struct conn *, struct msghdr *, size_t);

/* Close the first waiting group of descriptors, which no line took. */
static void
conn_drop_fds(struct conn *conn)
{
	struct conn_fds	*g = &conn->fds[0];
	size_t		 i;

	for (i = 0; i < g->n && i < PROTO_MAX_FDS; i++)
		close(g->fd[i]);
	conn->nfd_groups--;
	memmove(&conn->fds[0], &conn->fds[1],
	    conn->nfd_groups * sizeof conn->fds[0]);
}

/* The kept input now starts used bytes later: so do the groups' places. */
static void
conn_shift_fds(struct conn *conn, size_t used)
{
	size_t	 i;

	for (i = 0; i < conn->nfd_groups; i++)
		conn->fds[i].at -= used;
}

/* Close every waiting descriptor. */
static void
conn_close_fds(struct conn *conn)
{
	while (conn->nfd_groups > 0)
		conn_drop_fds(conn);
}

/*
 * Take the descriptors that came with the line the owner is handling,
 * from inside its line callback: up to max into fds.  Returns how many
 * came, which may be more than max (the rest are closed); 0 if none.
 */
size_t
conn_take_fds(struct conn *conn, int *fds, size_t max)
{
	struct conn_fds	*g = &conn->fds[0];
	size_t		 i, n;

	if (!conn->line_has_fds)
		return 0;
	n = g->n;
	for (i = 0; i < n && i < PROTO_MAX_FDS; i++) {
		if (i < max)
			fds[i] = g->fd[i];
		else
			close(g->fd[i]);
	}
	g->n = 0;
	conn->line_has_fds = 0;
	conn_drop_fds(conn);
	return n;
}

/* Free what conn_new allocated, whatever it got to. */
static void
conn_free_parts(struct conn *conn)
{
	if (conn->read_ev != NULL)
		event_free(conn->read_ev);
	if (conn->write_ev != NULL)
		event_free(conn->write_ev);
	if (conn->flush_ev != NULL)
		event_free(conn->flush_ev);
	if (conn->more_ev != NULL)
		event_free(conn->more_ev);
	if (conn->out != NULL)
		evbuffer_free(conn->out);
	free(conn->partial);
	conn_close_fds(conn);
	free(conn);
}

/*
 * Set up a connection over a non-blocking stream socket (accepted, or one
 * end of a socketpair in the tests), which it owns from then on.  Lines
 * and the close go to cb with arg; output past output_high unread bytes
 * pauses reading.  NULL if out of memory, with fd closed.
 */
struct conn *
conn_new(struct event_base *base, int fd, size_t output_high,
    const struct conn_cb *cb, void *arg)
{
	struct conn	*conn;

	if ((conn = calloc(1, sizeof *conn)) == NULL) {
		log_warnx("out of memory accepting a connection");
		close(fd);
		return NULL;
	}
	if ((conn->out = evbuffer_new()) == NULL ||
	    (conn->read_ev = event_new(base, fd, EV_READ | EV_PERSIST,
	    conn_read_cb, conn)) == NULL ||
	    (conn->write_ev = event_new(base, fd, EV_WRITE, conn_write_cb,
	    conn)) == NULL ||
	    (conn->flush_ev = event_new(base, -1, 0, conn_flush_cb,
	    conn)) == NULL ||
	    event_add(conn->read_ev, NULL) == -1) {
		log_warnx("out of memory accepting a connection");
		conn_free_parts(conn);
		close(fd);
		return NULL;
	}
	conn->base = base;
	conn->fd = fd;
	conn->output_high = output_high;
	conn->cb = cb;
	conn->cb_arg = arg;
	return conn;
}

/* Count this conn's throttles and errors into counters from now on. */
void
conn_set_counters(struct conn *conn, struct conn_counters *counters)
{
	conn->counters = counters;
}

/* Count an error reply the owner sends on this conn. */
void
conn_note_error(struct conn *conn, enum proto_error error)
{
	if (conn->counters != NULL && error < PROTO_E_COUNT)
		conn->counters->errors[error]++;
}

/* Whether reading is paused until the peer reads its replies. */
int
conn_throttled(const struct conn *conn)
{
	return conn->throttled;
}

/* The reply bytes queued and not yet written. */
size_t
conn_unsent(const struct conn *conn)
{
	return evbuffer_get_length(conn->out) +
	    (conn_reply_owner == conn ? conn_reply_len : 0);
}

/* Close the socket and free the connection; only its owner calls this. */
void
conn_free(struct conn *conn)
{
	int	 fd = conn->fd;

	if (conn_reply_owner == conn)
		conn_reply_owner = NULL;
	conn_free_parts(conn);
	close(fd);
}

/*
 * The transport is done: tell the owner, who frees the connection.  The
 * caller must not touch conn afterwards.
 */
static void
conn_gone(struct conn *conn)
{
	conn->cb->gone(conn->cb_arg);
}

/* Move the gathered replies of conn, from byte from on, behind its output. */
static void
conn_reply_to_out(struct conn *conn, size_t from)
{
	if (conn_reply_owner != conn)
		return;
	conn_reply_owner = NULL;
	if (from < conn_reply_len && evbuffer_add(conn->out,
	    conn_reply + from, conn_reply_len - from) == -1)
		log_warnx("out of memory queueing a reply");
}

/*
 * Write the gathered replies of conn straight to the socket, keeping what
 * it will not take; -1 on a write error.
 */
static int
conn_reply_write(struct conn *conn)
{
	ssize_t	 n;

	if (conn_reply_owner != conn)
		return 0;
	if ((n = write(conn->fd, conn_reply, conn_reply_len)) == -1) {
		if (!IO_RETRIABLE(errno)) {
			conn_reply_owner = NULL;
			return -1;
		}
		n = 0;
	}
	conn_reply_to_out(conn, (size_t)n);
	return 0;
}

/*
 * Write what the socket takes of the output, and wait for it to take the
 * rest.  Returns -1 if the connection is gone: freed on a write error, or
 * once a closing connection has sent everything.
 */
static int
conn_flush(struct conn *conn)
{
	struct timeval	 closing_tv = { CLOSING_SECS, 0 };
	int		 waiting;

	if (conn_reply_write(conn) == -1) {
		conn_gone(conn);
		return -1;
	}
	waiting = event_pending(conn->write_ev, EV_WRITE, NULL);
	if (evbuffer_get_length(conn->out) > 0 && !waiting &&
	    evbuffer_write(conn->out, conn->fd) == -1 &&
	    !IO_RETRIABLE(errno)) {
		conn_gone(conn);
		return -1;
	}
	if (evbuffer_get_length(conn->out) == 0 &&
	    conn->state == CONN_CLOSING) {
		conn_gone(conn);
		return -1;
	}
	/* A throttled connection waits too: only conn_write_cb resumes it. */
	if ((evbuffer_get_length(conn->out) > 0 || conn->throttled) &&
	    !waiting)
		event_add(conn->write_ev,
		    conn->state == CONN_CLOSING ? &closing_tv : NULL);
	return 0;
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

/*
 * Flush after the current callbacks, once however many replies come; a
 * connection handling its own input flushes when that is done.
 */
static void
conn_arm_flush(struct conn *conn)
{
	if (conn->flush_armed || conn->in_input)
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
	conn_write(conn, text, len);
	conn_write(conn, "\n", 1);
	json_object_put(msg);
}

/*
 * Queue bytes already formatted as whole lines: gathered for one write if
 * the connection is handling its own input and has nothing queued.
 */
void
conn_write(struct conn *conn, const char *text, size_t len)
{
	/* Gathering already means nothing went to out since. */
	if (conn_reply_owner == conn || (conn_reply_owner == NULL &&
	    conn->in_input && evbuffer_get_length(conn->out) == 0)) {
		if (conn_reply_owner == NULL)
			conn_reply_len = 0;
		if (len <= sizeof conn_reply - conn_reply_len) {
			memcpy(conn_reply + conn_reply_len, text, len);
			conn_reply_len += len;
			conn_reply_owner = conn;
			return;
		}
	}
	conn_reply_to_out(conn, 0);
	if (evbuffer_add(conn->out, text, len) == -1)
		log_warnx("out of memory queueing a reply");
	conn_arm_flush(conn);
}

/*
 * Stop reading, tell the owner at once (so it drops the peer's locks and
 * waits), and end the transport once its output is flushed (or after
 * CLOSING_SECS of stall).
 */
static void
conn_start_closing(struct conn *conn)
{
	struct timeval	 closing_tv = { CLOSING_SECS, 0 };

	/* Output already stalled gets the closing deadline from now. */
	if (event_pending(conn->write_ev, EV_WRITE, NULL))
		event_add(conn->write_ev, &closing_tv);
	conn->state = CONN_CLOSING;
	event_del(conn->read_ev);
	if (conn->more_ev != NULL)
		evtimer_del(conn->more_ev);
	conn->more = 0;
	conn->partial_len = 0;
	conn->cb->closing(conn->cb_arg);
	conn_arm_flush(conn);
}

/* Send a final error and close once it is flushed. */
void
conn_close_with(struct conn *conn, enum proto_error error, const char *msg)
{
	conn_note_error(conn, error);
	conn_send(conn, proto_reply_error(NULL, error, msg));
	conn_start_closing(conn);
}

/* Pause reading while the client is not reading its replies. */
static int
conn_throttle(struct conn *conn)
{
	if (evbuffer_get_length(conn->out) <= conn->output_high)
		return 0;
	if (!conn->throttled && conn->counters != NULL)
		conn->counters->throttles++;
	conn->throttled = 1;
	event_del(conn->read_ev);
	return 1;
}

/*
 * Handle the complete lines in buf, in order, the first scanned bytes of
 * which hold no newline; return how many bytes were used.  At most
 * LINES_PER_PASS lines are handled, and no new one once PASS_SECS have
 * passed since the first, so one client's pipeline cannot hold up the
 * loop; past that, more is set and the rest waits for a later pass.  A
 * lone request costs no clock read.  A line longer than the protocol
 * allows ends the connection.
 */
static size_t
conn_handle_lines(struct conn *conn, char *buf, size_t len, size_t scanned)
{
	char	*line = buf, *end = buf + len, *nl;
	double	 second_at = 0;
	int	 handled = 0;

	while (conn->state == CONN_OPEN && !conn_throttle(conn)) {
		if (handled == 1)
			second_at = clock_monotonic();
		else if (handled == LINES_PER_PASS || (handled > 1 &&
		    clock_monotonic() - second_at > PASS_SECS)) {
			conn->more = 1;
			break;
		}
		nl = memchr(line + scanned, '\n', end - line - scanned);
		scanned = 0;
		if (nl == NULL) {
			if (end - line <= PROTO_MAX_LINE)
				break;
			nl = end;
		}
		if (nl - line > PROTO_MAX_LINE) {
			conn_close_with(conn, PROTO_E_TOO_LARGE,
			    "request line longer than "
			    PROTO_TEXT(PROTO_MAX_LINE) " bytes");
			break;
		}
		conn->line_has_fds = conn->nfd_groups > 0 &&
		    conn->fds[0].at <= (size_t)(nl - buf);
		conn->cb->line(line, nl - line, conn->cb_arg);
		if (conn->line_has_fds) {
			/* Descriptors the owner did not take go now. */
			conn->line_has_fds = 0;
			conn_drop_fds(conn);
		}
		handled++;
		line = nl + 1;
	}
	conn_shift_fds(conn, (size_t)(line - buf));
	return line - buf;
}

/* Keep len bytes of unhandled input in the connection; -1 if no memory. */
static int
conn_keep_partial(struct conn *conn, const char *bytes, size_t len)
{
	if ((conn->partial = malloc(len)) == NULL)
		return -1;
	memcpy(conn->partial, bytes, len);
	conn->partial_len = conn->partial_size = len;
	conn->partial_scanned = conn->throttled || conn->more ? 0 : len;
	return 0;
}

/* Handle the lines now complete in the kept input, keeping the rest. */
static void
conn_handle_partial(struct conn *conn)
{
	size_t	 used;

	used = conn_handle_lines(conn, conn->partial, conn->partial_len,
	    conn->partial_scanned);
	if (conn->state != CONN_OPEN || used == conn->partial_len) {
		free(conn->partial);
		conn->partial = NULL;
		conn->partial_len = conn->partial_size = 0;
		return;
	}
	conn->partial_len -= used;
	memmove(conn->partial, conn->partial + used, conn->partial_len);
	conn->partial_scanned = conn->throttled || conn->more ? 0 :
	    conn->partial_len;
}

/*
 * Make room to read more of the line begun in the kept input: as much as
 * a maximal line needs, growing by doubling.  Returns the room, or 0 if
 * out of memory.
 */
static size_t
conn_partial_room(struct conn *conn)
{
	size_t	 size = conn->partial_size;
	char	*grown;

	if (size >= PARTIAL_MAX || size - conn->partial_len >= 4096)
		return size > conn->partial_len ? size - conn->partial_len : 0;
	size = size * 2 > conn->partial_len + 4096 ? size * 2 :
	    conn->partial_len + 4096;
	if (size > PARTIAL_MAX)
		size = PARTIAL_MAX;
	if ((grown = realloc(conn->partial, size)) == NULL)
		return 0;
	conn->partial = grown;
	conn->partial_size = size;
	return size - conn->partial_len;
}

/*
 * Read once into buf, which the kept input's byte at is, taking the
 * descriptors a client sent with a request (SCM_RIGHTS): they belong to
 * the line holding the last byte read, since Linux ends a read with the
 * data they came on, and a request sent with them is that data's end.
 */
static ssize_t
conn_recv(struct conn *conn, char *buf, size_t size, size_t at)
{
	union {
		struct cmsghdr	 hdr;
		char		 space[CMSG_SPACE(sizeof(int) *
				    PROTO_MAX_FDS)];
	}		 control;
	struct iovec	 iov = { buf, size };
	struct msghdr	 msg = { 0 };
	ssize_t		 n;

	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = &control;
	msg.msg_controllen = sizeof control;
	if ((n = recvmsg(conn->fd, &msg, MSG_CMSG_CLOEXEC)) <= 0)
		return n;
	/* Out of descriptors, the kernel sends none, but says so. */
	if (msg.msg_controllen > 0 || (msg.msg_flags & MSG_CTRUNC))
		conn_keep_fds(conn, &msg, at + n - 1);
	return n;
}

/*
 * Keep the descriptors of one read for the line holding byte at.  Those
 * past what one request may carry, or a list the kernel cut short, are
 * closed, the count kept past PROTO_MAX_FDS so that the line is refused.
 * A client with more groups waiting than any request stream makes is
 * cut off.
 */
static void
conn_keep_fds(struct conn *conn, struct msghdr *msg, size_t at)
{
	struct conn_fds	 g = { .n = 0, .at = at };
	struct cmsghdr	*c;
	size_t		 i, n;
	int		*fds;

	for (c = CMSG_FIRSTHDR(msg); c != NULL; c = CMSG_NXTHDR(msg, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		fds = (int *)(void *)CMSG_DATA(c);
		n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (i = 0; i < n; i++) {
			if (g.n < PROTO_MAX_FDS)
				g.fd[g.n] = fds[i];
			else
				close(fds[i]);
			g.n++;
		}
	}
	if ((msg->msg_flags & MSG_CTRUNC) && g.n <= PROTO_MAX_FDS) {
		for (i = 0; i < g.n; i++)
			close(g.fd[i]);
		g.n = PROTO_MAX_FDS + 1;	/* refused, whatever came */
	}
	if (conn->nfd_groups == CONN_FD_GROUPS) {
		for (i = 0; i < g.n && i < PROTO_MAX_FDS; i++)
			close(g.fd[i]);
		conn_close_with(conn, PROTO_E_LIMIT, "descriptors sent faster "
		    "than the requests that carry them");
		return;
	}
	conn->fds[conn->nfd_groups++] = g;
}

/*
 * Read once and handle every complete line.  Returns what read(2) did: the
 * byte count, 0 at EOF or -1 with errno.  Out of memory, the connection is
 * closing with an error reply, and the return is 1 so that reply flushes.
 */
static ssize_t
conn_read_input(struct conn *conn)
{
	ssize_t	 n;
	size_t	 used, room;

	if (conn->partial_len == 0) {
		if ((n = conn_recv(conn, conn_rbuf, sizeof conn_rbuf, 0)) <= 0)
			return n;
		used = conn_handle_lines(conn, conn_rbuf, n, 0);
		if (used < (size_t)n && conn->state == CONN_OPEN &&
		    conn_keep_partial(conn, conn_rbuf + used, n - used) == -1)
			goto nomem;
		return n;
	}
	if ((room = conn_partial_room(conn)) == 0)
		goto nomem;
	n = conn_recv(conn, conn->partial + conn->partial_len, room,
	    conn->partial_len);
	if (n <= 0)
		return n;
	conn->partial_len += n;
	conn_handle_partial(conn);
	return n;

nomem:
	log_warnx("out of memory reading a request");
	conn_close_with(conn, PROTO_E_INTERNAL, "out of memory");
	return 1;
}

/*
 * After a pass over its input, decide how the connection goes on: with
 * the lines left over on a later pass (a zero timer runs only after the
 * loop polled everyone else), by reading again, or not at all while it
 * is throttled (conn_write_cb resumes it) or closing.
 */
static void
conn_input_next(struct conn *conn)
{
	static const struct timeval	 next_pass = { 0, 0 };

	if (conn->state != CONN_OPEN || conn->throttled)
		return;
	if (!conn->more) {
		event_add(conn->read_ev, NULL);
		return;
	}
	event_del(conn->read_ev);
	if (conn->more_ev == NULL && (conn->more_ev = evtimer_new(
	    conn->base, conn_more_cb, conn)) == NULL) {
		log_warnx("out of memory pacing a pipeline");
		conn_close_with(conn, PROTO_E_INTERNAL, "out of memory");
		return;
	}
	evtimer_add(conn->more_ev, &next_pass);
}

/* Handle the kept input (one pass's worth), then go on and flush. */
static void
conn_handle_kept(struct conn *conn)
{
	conn->more = 0;
	conn->in_input = 1;
	if (conn->partial_len > 0)
		conn_handle_partial(conn);
	conn->in_input = 0;
	conn_input_next(conn);
	conn_flush(conn);
}

/*
 * Input: handle it, then send the replies in one write.  EOF or an error
 * ends the connection; after a clean EOF (a half-close) its locks go at
 * once, but pending replies still flush.
 */
static void
conn_read_cb(evutil_socket_t fd, short events, void *arg)
{
	struct conn	*conn = arg;
	ssize_t		 n;

	(void)fd;
	(void)events;
	conn->in_input = 1;
	n = conn_read_input(conn);
	conn->in_input = 0;
	if (conn->more)
		conn_input_next(conn);
	if (n == -1 && IO_RETRIABLE(errno))
		return;
	if (n == -1 || (n == 0 && evbuffer_get_length(conn->out) == 0)) {
		conn_gone(conn);
		return;
	}
	if (n == 0)
		conn_start_closing(conn);
	conn_flush(conn);
}

/*
 * The socket takes output again: write, then resume reading once the
 * backlog is below the low mark.  A closing connection that stalls for
 * CLOSING_SECS is freed.
 */
static void
conn_write_cb(evutil_socket_t fd, short events, void *arg)
{
	struct conn	*conn = arg;

	(void)fd;
	if (events & EV_TIMEOUT) {
		conn_gone(conn);
		return;
	}
	if (conn_flush(conn) == -1)
		return;
	if (!conn->throttled || evbuffer_get_length(conn->out) >
	    conn->output_high / 4)
		return;
	conn->throttled = 0;
	conn_handle_kept(conn);
}

/* A later pass: go on with the lines a pipeline left in the kept input. */
static void
conn_more_cb(evutil_socket_t fd, short events, void *arg)
{
	struct conn	*conn = arg;

	(void)fd;
	(void)events;
	conn_handle_kept(conn);
}

/*
 * What a reload keeps of the connection, into ss: its socket, the input
 * not yet handled, the output not yet sent (replies gathered for one
 * write included) and the descriptors that wait for their line.  The
 * bytes are borrowed from conn, which must not change until they are
 * written.
 */
void
conn_export(struct conn *conn, struct snap_session *ss)
{
	size_t	 i;

	conn_reply_to_out(conn, 0);
	ss->fd = conn->fd;
	ss->closing = conn->state == CONN_CLOSING;
	ss->partial = conn->partial;
	ss->partial_len = (uint32_t)conn->partial_len;
	ss->out_len = (uint32_t)evbuffer_get_length(conn->out);
	ss->out = ss->out_len > 0 ?
	    (char *)evbuffer_pullup(conn->out, -1) : NULL;
	if (ss->out == NULL)
		ss->out_len = 0;
	ss->ngroups = (uint32_t)conn->nfd_groups;
	for (i = 0; i < conn->nfd_groups && i < SNAP_FD_GROUPS; i++) {
		memcpy(ss->groups[i].fd, conn->fds[i].fd,
		    sizeof ss->groups[i].fd);
		ss->groups[i].n = (uint32_t)conn->fds[i].n;
		ss->groups[i].at = (uint32_t)conn->fds[i].at;
	}
}

/* Put back the kept input of a restored connection, to handle first. */
static int
conn_restore_input(struct conn *conn, const struct snap_session *ss)
{
	static const struct timeval	 next_pass = { 0, 0 };

	if (ss->partial_len == 0)
		return 0;
	if (ss->partial_len > PARTIAL_MAX ||
	    (conn->partial = malloc(ss->partial_len)) == NULL ||
	    (conn->more_ev = evtimer_new(conn->base, conn_more_cb,
	    conn)) == NULL)
		return -1;
	memcpy(conn->partial, ss->partial, ss->partial_len);
	conn->partial_len = conn->partial_size = ss->partial_len;
	conn->partial_scanned = 0;
	/* Its lines go first, on the first pass of the loop. */
	conn->more = 1;
	event_del(conn->read_ev);
	evtimer_add(conn->more_ev, &next_pass);
	return 0;
}

/*
 * A connection as a reload kept it (conn_export), over ss->fd, which it
 * owns from then on: NULL if out of memory, with the socket and the
 * waiting descriptors closed.
 */
struct conn *
conn_restore(struct event_base *base, const struct snap_session *ss,
    size_t output_high, const struct conn_cb *cb, void *arg)
{
	struct conn	*conn;
	size_t		 i, j;

	if ((conn = conn_new(base, ss->fd, output_high, cb, arg)) == NULL)
		goto closefds;
	for (i = 0; i < ss->ngroups && i < CONN_FD_GROUPS; i++) {
		for (j = 0; j < PROTO_MAX_FDS; j++)
			conn->fds[i].fd[j] = ss->groups[i].fd[j];
		conn->fds[i].n = ss->groups[i].n;
		conn->fds[i].at = ss->groups[i].at;
		conn->nfd_groups++;
	}
	if ((ss->out_len > 0 && evbuffer_add(conn->out, ss->out,
	    ss->out_len) == -1) || conn_restore_input(conn, ss) == -1) {
		log_warnx("out of memory restoring a connection");
		conn_free(conn);
		return NULL;
	}
	if (ss->closing) {
		conn->state = CONN_CLOSING;
		event_del(conn->read_ev);
	}
	if (ss->out_len > 0 || ss->closing)
		conn_arm_flush(conn);
	return conn;

closefds:
	for (i = 0; i < ss->ngroups && i < SNAP_FD_GROUPS; i++)
		for (j = 0; j < PROTO_MAX_FDS && j < ss->groups[i].n; j++)
			if (ss->groups[i].fd[j] >= 0)
				close(ss->groups[i].fd[j]);
	return NULL;
}
