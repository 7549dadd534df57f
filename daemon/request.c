/*
 * Answering requests: decode, dispatch, and one connection's acquires
 * (their waits, timers, grants and releases).  The grant rules themselves
 * live in locktab.c; this file turns them into protocol messages.
 */

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"

/* One acquire of a connection: waiting in a queue, then holding. */
struct acquire {
	TAILQ_ENTRY(acquire)	 entry;
	struct conn		*conn;
	struct lock_req		*req;
	const char		*id_text;	/* the id as JSON, in text */
	size_t			 id_len;
	struct event		*timeout_ev;
	struct event		*notify_ev;
	double			 started;	/* monotonic */
	const char		*owner;		/* in text */
	int			 held;
	char			 text[];	/* owner and id_text */
};

static size_t
acquire_count(struct conn *conn)
{
	struct acquire	*a;
	size_t		 n = 0;

	TAILQ_FOREACH(a, conn_acquires(conn), entry)
		n++;
	return n;
}

/* Find the connection's acquire of name, waiting or held. */
static struct acquire *
acquire_find(struct conn *conn, const char *name)
{
	struct acquire	*a;

	TAILQ_FOREACH(a, conn_acquires(conn), entry) {
		if (a->req != NULL && strcmp(lock_req_name(a->req), name) == 0)
			return a;
	}
	return NULL;
}

/* Stop the acquire's timers; it no longer waits. */
static void
acquire_stop_timers(struct acquire *a)
{
	if (a->timeout_ev != NULL) {
		event_free(a->timeout_ev);
		a->timeout_ev = NULL;
	}
	if (a->notify_ev != NULL) {
		event_free(a->notify_ev);
		a->notify_ev = NULL;
	}
}

/* Unlink and free an acquire whose lock_req is already gone. */
static void
acquire_free(struct acquire *a)
{
	TAILQ_REMOVE(conn_acquires(a->conn), a, entry);
	acquire_stop_timers(a);
	free(a);
}

/* Release or cancel the acquire in the lock table, then free it. */
static void
acquire_drop(struct acquire *a)
{
	struct server	*srv = conn_server(a->conn);
	struct lock_req	*req = a->req;

	/* Unlink first: releasing may grant others, never this acquire. */
	a->req = NULL;
	acquire_free(a);
	locktab_release(server_locktab(srv), req);
}

/* Send an error reply echoing id, which it takes. */
static void
reply_error_id(struct conn *conn, struct json_object *id,
    enum proto_error error, const char *msg)
{
	conn_send(conn, proto_reply_error(id, error, msg));
	json_object_put(id);
}

/* Send an error reply to the acquire, its id rebuilt from its text. */
static void
acquire_error(struct acquire *a, enum proto_error error, const char *msg)
{
	reply_error_id(a->conn, proto_id_parse(a->id_text, a->id_len), error,
	    msg);
}

/* Send an error reply to a request. */
static void
reply_error(struct conn *conn, const struct proto_request *r,
    enum proto_error error, const char *msg)
{
	reply_error_id(conn, proto_request_id(r), error, msg);
}

/* Start a success reply to a request, echoing its id. */
static struct json_object *
reply_new(const struct proto_request *r)
{
	struct json_object	*id = proto_request_id(r);
	struct json_object	*reply;

	reply = proto_reply_new(id, 1);
	json_object_put(id);
	return reply;
}

/* Describe one broker holder or waiter as the protocol shows it. */
struct json_object *
request_holder_encode(struct lock_req *req)
{
	struct acquire		*a = lock_req_arg(req);
	const struct peer	*peer = conn_peer(a->conn);
	struct proto_holder	 h;

	memset(&h, 0, sizeof h);
	h.pid = peer->pid;
	h.uid = peer->uid;
	h.gid = peer->gid;
	h.client = conn_client(a->conn);
	h.owner = a->owner;
	h.mode = lock_req_mode(req);
	h.since = lock_req_since(req);
	h.token = lock_req_held(req) ? lock_req_token(req) : 0;
	return proto_holder_encode(&h);
}

/* Send the one blocking event of a waiting acquire. */
static void
acquire_notify_cb(evutil_socket_t fd, short events, void *arg)
{
	struct acquire		*a = arg;
	struct json_object	*event, *id;

	(void)fd;
	(void)events;
	id = proto_id_parse(a->id_text, a->id_len);
	event = proto_event_new(id, "blocking");
	json_object_put(id);
	json_object_object_add(event, "name",
	    json_object_new_string(lock_req_name(a->req)));
	json_object_object_add(event, "holders",
	    listing_holders(conn_server(a->conn), lock_req_lock(a->req)));
	json_object_object_add(event, "position",
	    json_object_new_int(lock_req_position(a->req)));
	conn_send(a->conn, event);
}

/* The acquire waited out its timeout: cancel it and say so. */
static void
acquire_timeout_cb(evutil_socket_t fd, short events, void *arg)
{
	struct acquire	*a = arg;

	(void)fd;
	(void)events;
	acquire_error(a, PROTO_E_TIMEOUT, "timed out waiting for the lock");
	acquire_drop(a);
}

/*
 * Reply lines built by hand: printf was a sixth of a lock cycle's cost.
 * A line is bounded but for its id, which is written apart when long.
 */
#define LINE_ID_MAX	64

struct line {
	char	 buf[PROTO_MAX_NAME + LINE_ID_MAX + 128];
	size_t	 len;
};

static void
line_add(struct line *l, const char *text, size_t len)
{
	memcpy(l->buf + l->len, text, len);
	l->len += len;
}

static void
line_str(struct line *l, const char *text)
{
	line_add(l, text, strlen(text));
}

/* Append v in decimal, at least width digits (zero-padded). */
static void
line_uint(struct line *l, uint64_t v, int width)
{
	char	 digits[PROTO_UINT_DIGITS], *end = digits + sizeof digits;
	char	*first = proto_uint_digits(end, v, width);

	line_add(l, first, (size_t)(end - first));
}

/* Start a reply line, {"id":<id>, in l, or straight out if the id is long. */
static void
reply_start(struct conn *conn, struct line *l, const char *id_text,
    size_t id_len)
{
	line_add(l, "{\"id\":", 6);
	if (id_len <= LINE_ID_MAX) {
		line_add(l, id_text, id_len);
		return;
	}
	conn_write(conn, l->buf, l->len);
	conn_write(conn, id_text, id_len);
	l->len = 0;
}

/* Send a plain success reply, {"id":..,"ok":true}, without a json tree. */
static void
reply_ok(struct conn *conn, const char *id_text, size_t id_len)
{
	struct line	 l;

	l.len = 0;
	reply_start(conn, &l, id_text, id_len);
	line_add(&l, ",\"ok\":true}\n", 12);
	conn_write(conn, l.buf, l.len);
}

/* Format a grant reply by hand; names never need escaping. */
static void
grant_reply(struct acquire *a, struct lock_req *req, uint64_t waited_us)
{
	struct line	 l;

	l.len = 0;
	reply_start(a->conn, &l, a->id_text, a->id_len);
	line_str(&l, ",\"ok\":true,\"name\":\"");
	line_str(&l, lock_req_name(req));
	line_str(&l, "\",\"mode\":\"");
	line_str(&l, proto_mode_name(lock_req_mode(req)));
	line_str(&l, "\",\"token\":");
	line_uint(&l, (uint64_t)lock_req_token(req), 1);
	line_str(&l, ",\"waited\":");
	line_uint(&l, waited_us / 1000000, 1);
	line_str(&l, ".");
	line_uint(&l, waited_us % 1000000, 6);
	line_str(&l, "}\n");
	conn_write(a->conn, l.buf, l.len);
}

/*
 * The lock table granted an acquire: reply with its token.  The reply is
 * formatted directly, as names never need escaping.
 */
void
request_granted(struct lock_req *req, void *arg)
{
	struct acquire	*a = arg;
	double		 waited;

	a->req = req;
	a->held = 1;
	acquire_stop_timers(a);
	waited = clock_monotonic() - a->started;
	if (!(waited >= 0 && waited < PROTO_MAX_SECONDS * 10))
		waited = 0;
	grant_reply(a, req, (uint64_t)(waited * 1e6 + 0.5));
}

/*
 * The lock store could not take the lock for a waiting acquire: say why,
 * and forget the request, which the lock table frees.
 */
void
request_failed(struct lock_req *req, int error, void *arg)
{
	struct acquire	*a = arg;
	char		 msg[256];

	(void)req;
	a->req = NULL;
	snprintf(msg, sizeof msg, "cannot take the lock: %s",
	    strerror(-error));
	acquire_error(a, PROTO_E_INTERNAL, msg);
	acquire_free(a);
}

static struct timeval
seconds_to_tv(double seconds)
{
	struct timeval	 tv;

	tv.tv_sec = (time_t)seconds;
	tv.tv_usec = (suseconds_t)((seconds - floor(seconds)) * 1e6);
	return tv;
}

/* Arm the timeout and blocking-notice timers of a queued acquire. */
static int
acquire_arm_timers(struct acquire *a, const struct proto_request *r)
{
	struct event_base	*base = server_base(conn_server(a->conn));
	struct timeval		 tv;

	if (r->timeout > 0) {
		a->timeout_ev = evtimer_new(base, acquire_timeout_cb, a);
		tv = seconds_to_tv(r->timeout);
		if (a->timeout_ev == NULL || evtimer_add(a->timeout_ev, &tv))
			return -1;
	}
	/* The maximum, 1e9 s, is how a client says "never tell me". */
	if ((r->timeout < 0 || r->notify_after < r->timeout) &&
	    r->notify_after < PROTO_MAX_SECONDS) {
		a->notify_ev = evtimer_new(base, acquire_notify_cb, a);
		tv = seconds_to_tv(r->notify_after);
		if (a->notify_ev == NULL || evtimer_add(a->notify_ev, &tv))
			return -1;
	}
	return 0;
}

/* Reply to an acquire the lock table refused with errno -rc. */
static void
acquire_failed(struct conn *conn, const struct proto_request *r, int rc)
{
	char	 msg[256];

	if (rc == -EWOULDBLOCK) {
		reply_error(conn, r, PROTO_E_TIMEOUT, "the lock is held");
	} else if (rc == LOCKTAB_E_NO_TOKENS) {
		/* No token left under the ceiling saved on disk. */
		reply_error(conn, r, PROTO_E_INTERNAL,
		    server_tokens_exhausted(conn_server(conn)));
	} else if (rc == LOCKTAB_E_MAX_FILES) {
		snprintf(msg, sizeof msg, "the lock directory already holds "
		    "%zu lock files (--max-lock-files); only names whose file "
		    "exists can be acquired",
		    server_max_lock_files(conn_server(conn)));
		reply_error(conn, r, PROTO_E_LIMIT, msg);
	} else if (rc == -EMFILE || rc == -ENFILE || rc == -ENOMEM) {
		snprintf(msg, sizeof msg, "cannot open the lock file: %s",
		    strerror(-rc));
		reply_error(conn, r, PROTO_E_LIMIT, msg);
	} else {
		snprintf(msg, sizeof msg, "cannot open the lock file: %s%s",
		    strerror(-rc), rc == -ELOOP ? " (it is a symlink)" : "");
		reply_error(conn, r, PROTO_E_INTERNAL, msg);
		/* The whole lock dir may be gone: then the daemon exits. */
		if (rc == -ENOENT)
			server_lock_file_missing(conn_server(conn));
	}
}

/* A new acquire, with its owner and id text in the same allocation. */
static struct acquire *
acquire_new(struct conn *conn, const struct proto_request *r)
{
	struct acquire	*a;
	size_t		 owner_size = strlen(r->owner) + 1;
	char		*id_text;

	if ((a = calloc(1, sizeof *a + owner_size + r->id_len + 1)) == NULL)
		return NULL;
	memcpy(a->text, r->owner, owner_size);
	a->owner = a->text;
	id_text = a->text + owner_size;
	memcpy(id_text, r->id_text, r->id_len);
	id_text[r->id_len] = '\0';
	a->id_text = id_text;
	a->conn = conn;
	a->id_len = r->id_len;
	a->started = clock_monotonic();
	TAILQ_INSERT_TAIL(conn_acquires(conn), a, entry);
	return a;
}

static void
handle_acquire(struct conn *conn, const struct proto_request *r)
{
	struct server	*srv = conn_server(conn);
	struct acquire	*a;
	struct lock_req	*req;
	int		 rc;

	if (acquire_find(conn, r->name) != NULL) {
		reply_error(conn, r, PROTO_E_ALREADY_HELD,
		    "this connection already holds or awaits that name");
		return;
	}
	if (acquire_count(conn) >= server_max_locks_per_client(srv)) {
		reply_error(conn, r, PROTO_E_LIMIT,
		    "too many locks held or awaited by this connection");
		return;
	}
	if ((a = acquire_new(conn, r)) == NULL) {
		reply_error(conn, r, PROTO_E_LIMIT,
		    "out of memory");
		return;
	}
	rc = locktab_acquire(server_locktab(srv), r->name, r->mode,
	    r->timeout == 0, a, &req);
	if (rc != 0) {
		acquire_failed(conn, r, rc);
		acquire_free(a);
		return;
	}
	a->req = req;
	if (!a->held && acquire_arm_timers(a, r) == -1) {
		reply_error(conn, r, PROTO_E_LIMIT,
		    "out of memory");
		acquire_drop(a);
	}
}

static void
handle_release(struct conn *conn, const struct proto_request *r)
{
	struct acquire	*a;

	if ((a = acquire_find(conn, r->name)) == NULL) {
		reply_error(conn, r, PROTO_E_NOT_HELD,
		    "this connection neither holds nor awaits that name");
		return;
	}
	if (!a->held)
		acquire_error(a, PROTO_E_CANCELLED,
		    "the wait was cancelled by a release");
	acquire_drop(a);
	reply_ok(conn, r->id_text, r->id_len);
}

static void
handle_list(struct conn *conn, const struct proto_request *r)
{
	struct json_object	*reply, *locks;
	int			 more;

	reply = reply_new(r);
	locks = listing_locks(conn_server(conn), r->name, r->all, r->after,
	    (size_t)r->limit, &more);
	json_object_object_add(reply, "locks", locks);
	json_object_object_add(reply, "more", json_object_new_boolean(more));
	conn_send(conn, reply);
}

static void
handle_status(struct conn *conn, const struct proto_request *r)
{
	struct server		*srv = conn_server(conn);
	struct locktab		*tab = server_locktab(srv);
	struct json_object	*reply;

	reply = reply_new(r);
	json_object_object_add(reply, "version",
	    json_object_new_string(LOCKSD_VERSION));
	json_object_object_add(reply, "pid", json_object_new_int(getpid()));
	json_object_object_add(reply, "uptime",
	    json_object_new_double(server_uptime(srv)));
	json_object_object_add(reply, "connections",
	    json_object_new_int64((int64_t)server_nconns(srv)));
	json_object_object_add(reply, "locks_held",
	    json_object_new_int64((int64_t)locktab_nheld(tab)));
	json_object_object_add(reply, "waiters",
	    json_object_new_int64((int64_t)locktab_nwaiting(tab)));
	json_object_object_add(reply, "acquired_total",
	    json_object_new_int64((int64_t)locktab_granted_total(tab)));
	conn_send(conn, reply);
}

static void
handle_hello(struct conn *conn, const struct proto_request *r)
{
	struct json_object	*reply;

	if (conn_set_client(conn, r->client) == -1) {
		reply_error(conn, r, PROTO_E_LIMIT,
		    "out of memory");
		return;
	}
	reply = reply_new(r);
	json_object_object_add(reply, "server",
	    json_object_new_string("locksd"));
	json_object_object_add(reply, "version",
	    json_object_new_string(LOCKSD_VERSION));
	json_object_object_add(reply, "protocol",
	    json_object_new_int(PROTO_VERSION));
	json_object_object_add(reply, "pid", json_object_new_int(getpid()));
	conn_send(conn, reply);
}

/* Answer one decoded request, or the error its decoding found. */
void
request_dispatch(struct conn *conn, const struct proto_request *r,
    enum proto_error error, const char *msg)
{
	if (error != PROTO_OK) {
		reply_error(conn, r, error, msg);
		return;
	}
	switch (r->op) {
	case PROTO_OP_HELLO:
		handle_hello(conn, r);
		break;
	case PROTO_OP_PING:
		reply_ok(conn, r->id_text, r->id_len);
		break;
	case PROTO_OP_ACQUIRE:
		handle_acquire(conn, r);
		break;
	case PROTO_OP_RELEASE:
		handle_release(conn, r);
		break;
	case PROTO_OP_LIST:
		handle_list(conn, r);
		break;
	case PROTO_OP_STATUS:
		handle_status(conn, r);
		break;
	}
}

/* Release every lock and cancel every wait of a closing connection. */
void
request_drop_all(struct conn *conn)
{
	struct acquire	*a;

	while ((a = TAILQ_FIRST(conn_acquires(conn))) != NULL)
		acquire_drop(a);
}
