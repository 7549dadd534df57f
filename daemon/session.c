/*
 * One client's session: it owns its conn, parses each line the conn hands
 * it, dispatches the request, and keeps the client's label and acquires
 * (their waits, timers, grants and releases).  The grant rules themselves
 * live in locktab.c; this file turns them into protocol messages.  What
 * sessions share, and the calls up into the daemon, come in the
 * session_host server.c made.
 */

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"

struct acquire;
TAILQ_HEAD(acquire_list, acquire);

struct session {
	TAILQ_ENTRY(session)	 entry;
	struct session_host	*host;
	struct conn		*conn;
	struct json_tokener	*tok;
	struct client_info	 client;
	struct acquire_list	 acquires;
	int			 uid_counted;	/* for host->closed */
};

/*
 * One acquire of a session: waiting in a queue, then holding.  The
 * holder comes first, as the lock table's arg points at it.
 */
struct acquire {
	struct holder_info	 holder;
	TAILQ_ENTRY(acquire)	 entry;
	struct session		*session;
	struct conn		*conn;		/* the session's, for replies */
	struct lock_req		*req;
	const char		*id_text;	/* the id as JSON, in text */
	size_t			 id_len;
	struct event		*timeout_ev;
	struct event		*notify_ev;
	double			 started;	/* monotonic */
	int			 held;
	char			 text[];	/* owner and id_text */
};

/* The lock table's arg is the holder, so it must be the first member. */
_Static_assert(offsetof(struct acquire, holder) == 0,
    "struct acquire must start with its holder_info");

static size_t
acquire_count(struct session *s)
{
	struct acquire	*a;
	size_t		 n = 0;

	TAILQ_FOREACH(a, &s->acquires, entry)
		n++;
	return n;
}

/* Find the session's acquire of name, waiting or held. */
static struct acquire *
acquire_find(struct session *s, const char *name)
{
	struct acquire	*a;

	TAILQ_FOREACH(a, &s->acquires, entry) {
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
	TAILQ_REMOVE(&a->session->acquires, a, entry);
	acquire_stop_timers(a);
	free(a);
}

/* Release or cancel the acquire in the lock table, then free it. */
static void
acquire_drop(struct acquire *a)
{
	struct session_host	*host = a->session->host;
	struct lock_req		*req = a->req;

	/* Unlink first: releasing may grant others, never this acquire. */
	a->req = NULL;
	acquire_free(a);
	locktab_release(host->locktab, req);
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
	    listing_holders(a->session->host->listing,
	    lock_req_lock(a->req)));
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
 * Send a reply line from format.c: a long id, which it leaves out, goes
 * between the line's first PROTO_REPLY_ID_AT bytes and the rest.
 */
static void
reply_write(struct conn *conn, const char *line, size_t len,
    const char *id_text, size_t id_len)
{
	/* Only a name past PROTO_MAX_NAME, never in the lock table, fails. */
	if (len == 0)
		fatalx("%s: reply line does not fit", __func__);
	if (id_len > PROTO_REPLY_ID_INLINE) {
		conn_write(conn, line, PROTO_REPLY_ID_AT);
		conn_write(conn, id_text, id_len);
		line += PROTO_REPLY_ID_AT;
		len -= PROTO_REPLY_ID_AT;
	}
	conn_write(conn, line, len);
}

/* Send a plain success reply, {"id":..,"ok":true}, without a json tree. */
static void
reply_ok(struct conn *conn, const char *id_text, size_t id_len)
{
	char	 line[PROTO_REPLY_MAX];

	reply_write(conn, line, proto_format_ok(line, sizeof line, id_text,
	    id_len), id_text, id_len);
}

/* Send a grant reply, formatted by hand: printf was a sixth of its cost. */
static void
grant_reply(struct acquire *a, struct lock_req *req, uint64_t waited_us)
{
	char	 line[PROTO_REPLY_MAX];
	size_t	 len;

	len = proto_format_grant(line, sizeof line, a->id_text, a->id_len,
	    lock_req_name(req), lock_req_mode(req),
	    (uint64_t)lock_req_token(req), waited_us);
	reply_write(a->conn, line, len, a->id_text, a->id_len);
}

/*
 * The lock table granted an acquire: reply with its token.  The reply is
 * formatted directly, as names never need escaping.
 */
void
session_granted(struct lock_req *req, void *arg)
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
session_failed(struct lock_req *req, int error, void *arg)
{
	struct acquire	*a = arg;
	char		 msg[PATH_MAX + 512];	/* the store's text */

	a->req = NULL;
	if (locktab_explain(a->session->host->locktab, lock_req_name(req),
	    error, msg, sizeof msg) <= 0)
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
	struct event_base	*base = a->session->host->base;
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
acquire_failed(struct session *s, const struct proto_request *r, int rc)
{
	struct session_host	*host = s->host;
	char			 msg[PATH_MAX + 512];	/* the store's text */

	if (rc == -EWOULDBLOCK) {
		reply_error(s->conn, r, PROTO_E_TIMEOUT, "the lock is held");
	} else if (rc == LOCKTAB_E_NO_TOKENS) {
		/* No token left under the ceiling saved on disk. */
		reply_error(s->conn, r, PROTO_E_INTERNAL,
		    host->tokens_exhausted(host->arg));
	} else if (rc == LOCKTAB_E_MAX_FILES) {
		snprintf(msg, sizeof msg, "the lock directory already holds "
		    "%zu lock files (--max-lock-files); only names whose file "
		    "exists can be acquired", host->max_lock_files);
		reply_error(s->conn, r, PROTO_E_LIMIT, msg);
	} else if (rc == -EMFILE || rc == -ENFILE || rc == -ENOMEM) {
		snprintf(msg, sizeof msg, "cannot open the lock file: %s",
		    strerror(-rc));
		reply_error(s->conn, r, PROTO_E_LIMIT, msg);
	} else {
		if (locktab_explain(host->locktab, r->name, rc, msg,
		    sizeof msg) <= 0)
			snprintf(msg, sizeof msg, "cannot open the lock file: "
			    "%s%s", strerror(-rc),
			    rc == -ELOOP ? " (it is a symlink)" : "");
		reply_error(s->conn, r, PROTO_E_INTERNAL, msg);
		/* The whole lock dir may be gone: then the daemon exits. */
		if (rc == -ENOENT)
			host->lock_file_missing(host->arg);
	}
}

/* A new acquire, with its owner and id text in the same allocation. */
static struct acquire *
acquire_new(struct session *s, const struct proto_request *r)
{
	struct acquire	*a;
	size_t		 owner_size = strlen(r->owner) + 1;
	char		*id_text;

	if ((a = calloc(1, sizeof *a + owner_size + r->id_len + 1)) == NULL)
		return NULL;
	memcpy(a->text, r->owner, owner_size);
	a->holder.owner = a->text;
	a->holder.client = &s->client;
	id_text = a->text + owner_size;
	memcpy(id_text, r->id_text, r->id_len);
	id_text[r->id_len] = '\0';
	a->id_text = id_text;
	a->session = s;
	a->conn = s->conn;
	a->id_len = r->id_len;
	a->started = clock_monotonic();
	TAILQ_INSERT_TAIL(&s->acquires, a, entry);
	return a;
}

static void
handle_acquire(struct session *s, const struct proto_request *r)
{
	struct session_host	*host = s->host;
	struct acquire		*a;
	struct lock_req		*req;
	int			 rc;

	if (acquire_find(s, r->name) != NULL) {
		reply_error(s->conn, r, PROTO_E_ALREADY_HELD,
		    "this connection already holds or awaits that name");
		return;
	}
	if (acquire_count(s) >= host->max_locks_per_client) {
		reply_error(s->conn, r, PROTO_E_LIMIT,
		    "too many locks held or awaited by this connection");
		return;
	}
	if ((a = acquire_new(s, r)) == NULL) {
		reply_error(s->conn, r, PROTO_E_LIMIT,
		    "out of memory");
		return;
	}
	/* The lock table's arg is the holder, the acquire's first member. */
	rc = locktab_acquire(host->locktab, r->name, r->mode,
	    r->timeout == 0, &a->holder, &req);
	if (rc != 0) {
		acquire_failed(s, r, rc);
		acquire_free(a);
		return;
	}
	a->req = req;
	if (!a->held && acquire_arm_timers(a, r) == -1) {
		reply_error(s->conn, r, PROTO_E_LIMIT,
		    "out of memory");
		acquire_drop(a);
	}
}

static void
handle_release(struct session *s, const struct proto_request *r)
{
	struct acquire	*a;

	if ((a = acquire_find(s, r->name)) == NULL) {
		reply_error(s->conn, r, PROTO_E_NOT_HELD,
		    "this connection neither holds nor awaits that name");
		return;
	}
	if (!a->held)
		acquire_error(a, PROTO_E_CANCELLED,
		    "the wait was cancelled by a release");
	acquire_drop(a);
	reply_ok(s->conn, r->id_text, r->id_len);
}

static void
handle_list(struct session *s, const struct proto_request *r)
{
	struct json_object	*reply, *locks;
	int			 more;

	reply = reply_new(r);
	locks = listing_locks(s->host->listing, r->name, r->all, r->after,
	    (size_t)r->limit, &more);
	json_object_object_add(reply, "locks", locks);
	json_object_object_add(reply, "more", json_object_new_boolean(more));
	conn_send(s->conn, reply);
}

static void
handle_status(struct session *s, const struct proto_request *r)
{
	struct session_host	*host = s->host;
	struct locktab		*tab = host->locktab;
	struct json_object	*reply;

	reply = reply_new(r);
	json_object_object_add(reply, "version",
	    json_object_new_string(LOCKSD_VERSION));
	json_object_object_add(reply, "pid", json_object_new_int(getpid()));
	json_object_object_add(reply, "uptime",
	    json_object_new_double(clock_monotonic() - host->started));
	json_object_object_add(reply, "connections",
	    json_object_new_int64((int64_t)host->nsessions));
	json_object_object_add(reply, "locks_held",
	    json_object_new_int64((int64_t)locktab_nheld(tab)));
	json_object_object_add(reply, "waiters",
	    json_object_new_int64((int64_t)locktab_nwaiting(tab)));
	json_object_object_add(reply, "acquired_total",
	    json_object_new_int64((int64_t)locktab_granted_total(tab)));
	conn_send(s->conn, reply);
}

/* Replace the client label; -1 if out of memory. */
static int
session_set_label(struct session *s, const char *label)
{
	char	*copy;

	if ((copy = strdup(label)) == NULL)
		return -1;
	free(s->client.label);
	s->client.label = copy;
	return 0;
}

static void
handle_hello(struct session *s, const struct proto_request *r)
{
	struct json_object	*reply;

	if (session_set_label(s, r->client) == -1) {
		reply_error(s->conn, r, PROTO_E_LIMIT,
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
	conn_send(s->conn, reply);
}

/* Answer one decoded request, or the error its decoding found. */
static void
session_dispatch(struct session *s, const struct proto_request *r,
    enum proto_error error, const char *msg)
{
	if (error != PROTO_OK) {
		reply_error(s->conn, r, error, msg);
		return;
	}
	switch (r->op) {
	case PROTO_OP_HELLO:
		handle_hello(s, r);
		break;
	case PROTO_OP_PING:
		reply_ok(s->conn, r->id_text, r->id_len);
		break;
	case PROTO_OP_ACQUIRE:
		handle_acquire(s, r);
		break;
	case PROTO_OP_RELEASE:
		handle_release(s, r);
		break;
	case PROTO_OP_LIST:
		handle_list(s, r);
		break;
	case PROTO_OP_STATUS:
		handle_status(s, r);
		break;
	}
}

/* The conn's line callback: parse one request line and dispatch it. */
static void
session_line_cb(const char *line, size_t len, void *arg)
{
	struct session		*s = arg;
	struct proto_scratch	 scratch;
	struct proto_request	 r;
	struct json_object	*obj;
	enum proto_error	 error;
	const char		*msg = NULL;

	if (proto_blank(line, len))
		return;
	error = proto_request_parse(s->tok, line, len, &scratch, &r, &obj,
	    &msg);
	session_dispatch(s, &r, error, msg);
	json_object_put(obj);
}

/* Release every lock and cancel every wait of the session. */
static void
session_drop_all(struct session *s)
{
	struct acquire	*a;

	while ((a = TAILQ_FIRST(&s->acquires)) != NULL)
		acquire_drop(a);
}

/* The conn's closing callback: the peer's locks go at once. */
static void
session_closing_cb(void *arg)
{
	session_drop_all(arg);
}

/* The conn's gone callback: the transport is done, so is the session. */
static void
session_gone_cb(void *arg)
{
	session_free(arg);
}

static const struct conn_cb session_conn_cb = {
	session_line_cb,
	session_closing_cb,
	session_gone_cb
};

/* Free what session_new allocated, whatever it got to. */
static void
session_free_parts(struct session *s)
{
	if (s->tok != NULL)
		json_tokener_free(s->tok);
	free(s->client.label);
	free(s);
}

/*
 * Start a session for an admitted peer over fd (a non-blocking stream
 * socket it owns from then on).  counted is handed back to host->closed.
 * NULL if out of memory, with fd closed.
 */
struct session *
session_new(struct session_host *host, int fd, const struct peer *peer,
    int counted)
{
	struct session	*s;

	if ((s = calloc(1, sizeof *s)) == NULL ||
	    (s->tok = proto_tokener_new()) == NULL ||
	    (s->client.label = strdup("")) == NULL) {
		log_warnx("out of memory accepting a connection");
		if (s != NULL)
			session_free_parts(s);
		close(fd);
		return NULL;
	}
	if ((s->conn = conn_new(host->base, fd, host->output_high,
	    &session_conn_cb, s)) == NULL) {
		session_free_parts(s);
		return NULL;
	}
	s->host = host;
	s->client.peer = *peer;
	s->uid_counted = counted;
	TAILQ_INIT(&s->acquires);
	TAILQ_INSERT_TAIL(&host->sessions, s, entry);
	host->nsessions++;
	return s;
}

/*
 * Release everything the session held or awaited, free its conn and
 * itself, and tell the host.  The caller must not touch s afterwards.
 */
void
session_free(struct session *s)
{
	struct session_host	*host = s->host;
	struct peer		 peer = s->client.peer;
	int			 counted = s->uid_counted;

	log_debug("connection from pid %ld closed", (long)peer.pid);
	TAILQ_REMOVE(&host->sessions, s, entry);
	host->nsessions--;
	session_drop_all(s);
	conn_free(s->conn);
	session_free_parts(s);
	host->closed(&peer, counted, host->arg);
}

/* Free every session, at shutdown. */
void
session_free_all(struct session_host *host)
{
	struct session	*s;

	while ((s = TAILQ_FIRST(&host->sessions)) != NULL)
		session_free(s);
}
