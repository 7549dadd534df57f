/*
 * The etcd lock store: a cluster lock's take is one key in etcd, under
 * "<prefix><name>/", on the daemon's one lease.  Takes queue in etcd by
 * create_revision; a take that is not at the head watches only the key
 * just ahead of it, from etcd's next revision (a watch from a revision
 * already past, even the one after its read when others wrote since,
 * joins etcd's unsynced watchers, served every 100 ms), and reads the
 * queue once more when the watch is in place, for a delete before it.
 * The grant rules stay in the lock table: this store only says when a
 * take holds.
 *
 * Transport: etcd's v3 JSON gateway over HTTP/1.1 (evhttp), one pool of
 * connections per endpoint, a connection of its own for the keepalive,
 * and one for each watch, which is a chunked stream of JSON lines.
 */

#include <sys/socket.h>

#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "daemon.h"
#include "etcd.h"

#define ETCD_POOL		4	/* connections per endpoint */
#define ETCD_CALL_TIMEOUT	3	/* seconds for one unary request */
#define ETCD_WATCH_TIMEOUT	60	/* seconds a quiet watch lasts */
#define ETCD_QUEUE_MAX		10000	/* keys read of one lock's queue */
#define ETCD_OWN_WATCH_DELAY	1.0	/* seconds held before its key is
					   watched, so short holds make none */

enum el_phase {
	EL_IDLE,	/* no key */
	EL_LEASING,	/* waits for the daemon's lease */
	EL_PUTTING,	/* its key's put and first read in flight */
	EL_WAITING,	/* watches the key ahead, or reads the queue again */
	EL_OWNED	/* its key holds */
};

struct store_etcd;

/* One endpoint: a member's client URL, and its connections. */
struct etcd_endpoint {
	char			 host[256];
	int			 port;
	struct evhttp_connection *pool[ETCD_POOL];
	struct evhttp_connection *keepalive;
};

/* The key of a shared request that joined the lock's held take. */
struct etcd_joiner {
	char			 key[ETCD_KEY_MAX];
	int64_t			 revision;
};

/*
 * A place in etcd's queue for a request that waits behind the lock's take
 * on this daemon: its own key, put when it queued, which the take uses
 * when the request's turn comes, so that it keeps its place in etcd's
 * FIFO ahead of other machines' later requests.
 */
struct etcd_resv {
	TAILQ_ENTRY(etcd_resv)	 entry;
	struct lock_req		*req;		/* NULL once it left */
	enum proto_mode		 mode;
	char			 key[ETCD_KEY_MAX];
	int64_t			 revision;	/* 0 until its put is answered */
	int64_t			 lease;		/* the key's */
	int			 putting;	/* its put is unanswered */
	int			 listed;	/* in its lock's resvs */
	int			 adopted;	/* the take's key now */
	uint64_t		 adopted_gen;	/* the take's gen then */
};
TAILQ_HEAD(etcd_resv_list, etcd_resv);

/* A lock's state underneath: lives as long as a call or watch needs it. */
struct etcd_lock {
	TAILQ_ENTRY(etcd_lock)	 entry;
	struct store_etcd	*store;
	struct lock		*lock;		/* NULL once closed */
	enum el_phase		 phase;
	enum proto_mode		 mode;
	uint64_t		 gen;		/* counts up per take */
	int			 fresh;		/* owned, not yet taken */
	int			 refs;		/* calls and watches */
	char			 key[ETCD_KEY_MAX];
	int64_t			 revision;	/* the key's create_revision */
	int64_t			 lease;		/* the key's */
	struct json_object	*holders;	/* the head's, last read */
	struct evhttp_connection *watch;
	struct evbuffer		*watch_buf;
	struct event		*later;		/* deferred steps */
	int			 later_error;	/* to report, or 0 */
	int			 later_read;	/* read the queue again */
	int			 later_check;	/* read it, keeping the watch */
	int			 later_verify;	/* see that its held key is there */
	int			 own_watch;	/* the watch is on its own key */
	int			 later_own;	/* watch its held key */
	int			 lost_pending;	/* lease_lost is to see it */
	uint64_t		 slot;		/* its keys' name, reused */
	int			 puts;		/* puts not answered yet */
	int			 fresh_name;	/* the next put: a new slot */
	int64_t			 watched;	/* the revision watched */
	struct etcd_joiner	*joiners;	/* keys of joined holders */
	size_t			 njoiners;
	int64_t			 join_revision;	/* a join granted, not taken */
	int			 joining;	/* a join's txn in flight */
	int			 join_refused;	/* an exclusive key is ahead */
	struct etcd_resv_list	 resvs;		/* of waiters, in queue order */
	char			 name[];
};
TAILQ_HEAD(etcd_lock_list, etcd_lock);

typedef void (*etcd_reply_fn)(struct store_etcd *, struct json_object *,
		    void *, uint64_t);

/* One unary request in flight, tried on each endpoint in turn. */
struct etcd_call {
	TAILQ_ENTRY(etcd_call)	 entry;
	struct store_etcd	*store;
	const char		*path;
	char			*body;
	size_t			 tries;
	int			 keepalive;
	unsigned		 lane;		/* which pooled connection */
	etcd_reply_fn		 fn;
	void			*arg;
	uint64_t		 gen;
};
TAILQ_HEAD(etcd_call_list, etcd_call);

struct etcd_list_req {
	store_etcd_list_cb	 cb;
	void			*arg;
	int			 cancelled;
	char			 name[PROTO_MAX_NAME + 1];	/* "" for all */
};

struct store_etcd {
	struct lock_store	 base;		/* first, for the table */
	struct event_base	*evbase;
	struct etcd_endpoint	 endpoints[ETCD_ENDPOINTS_MAX];
	size_t			 nendpoints;
	size_t			 current;	/* the endpoint in use */
	char			 prefix[ETCD_PREFIX_MAX];
	char			 node[ETCD_NODE_MAX];
	int			 ttl;
	size_t			 max_waits;
	size_t			 nwaits;	/* locks with a key */
	size_t			 nresvs;	/* waiters' places held */
	int64_t			 lease;		/* 0: none */
	int			 leasing;	/* a grant in flight */
	int64_t			 old_lease;	/* to revoke when back */
	uint64_t		 seq;		/* of keys on this lease */
	double			 keepalive_sent;	/* monotonic */
	double			 lease_ok_sent;	/* last success's */
	struct event		*keepalive_ev;
	struct event		*deadline_ev;
	struct etcd_lock_list	 locks;		/* every open state */
	struct etcd_call_list	 calls;
	struct store_etcd_hooks	 hooks;
	int			 closing;	/* in store_etcd_free */
};

static void	el_read_queue(struct etcd_lock *);
static void	lease_grant(struct store_etcd *);
static void	el_start_put(struct etcd_lock *);

/* Parse "http://host:port" into ep; -1 if it is not such a URL. */
static int
endpoint_parse(const char *url, size_t len, struct etcd_endpoint *ep)
{
	char		 text[300], *colon, *end;
	long		 port;

	memset(ep, 0, sizeof *ep);
	if (len >= sizeof text || len <= 7 || strncmp(url, "http://", 7) != 0)
		return -1;
	memcpy(text, url + 7, len - 7);
	text[len - 7] = '\0';
	if ((end = strchr(text, '/')) != NULL)
		*end = '\0';
	if ((colon = strrchr(text, ':')) == NULL) {
		ep->port = 2379;
	} else {
		*colon = '\0';
		port = strtol(colon + 1, &end, 10);
		if (*end != '\0' || port <= 0 || port > 65535)
			return -1;
		ep->port = (int)port;
	}
	if (text[0] == '\0' || strlen(text) >= sizeof ep->host)
		return -1;
	memcpy(ep->host, text, strlen(text) + 1);
	return 0;
}

/* Fill the store's endpoints from "URL[,URL...]"; -1 if one is bad. */
static int
endpoints_parse(struct store_etcd *st, const char *urls)
{
	const char	*p = urls, *comma;
	size_t		 len;

	while (*p != '\0') {
		comma = strchr(p, ',');
		len = comma != NULL ? (size_t)(comma - p) : strlen(p);
		if (st->nendpoints == ETCD_ENDPOINTS_MAX ||
		    endpoint_parse(p, len, &st->endpoints[st->nendpoints]))
			return -1;
		st->nendpoints++;
		p += len + (comma != NULL);
	}
	return st->nendpoints > 0 ? 0 : -1;
}

/* A connection to an endpoint, made on first use. */
static struct evhttp_connection *
endpoint_conn(struct store_etcd *st, struct etcd_endpoint *ep,
    struct evhttp_connection **slot, int timeout)
{
	if (*slot == NULL) {
		*slot = evhttp_connection_base_new(st->evbase, NULL, ep->host,
		    (unsigned short)ep->port);
		if (*slot != NULL)
			evhttp_connection_set_timeout(*slot, timeout);
	}
	return *slot;
}

static void	call_send(struct etcd_call *);

/* Free a finished call. */
static void
call_free(struct etcd_call *call)
{
	TAILQ_REMOVE(&call->store->calls, call, entry);
	free(call->body);
	free(call);
}

/* The reply body of a finished request as JSON, or NULL. */
static struct json_object *
call_reply_json(struct evhttp_request *req)
{
	struct evbuffer		*in = evhttp_request_get_input_buffer(req);
	struct json_tokener	*tok;
	struct json_object	*obj;
	size_t			 len = evbuffer_get_length(in);

	if ((tok = json_tokener_new_ex(32)) == NULL)
		return NULL;
	obj = json_tokener_parse_ex(tok, (const char *)evbuffer_pullup(in,
	    -1), (int)len);
	json_tokener_free(tok);
	return obj;
}

/*
 * A unary request ended.  A connection error moves the store to the next
 * endpoint and tries there, once per endpoint; an HTTP error or a failed
 * last try hands the caller NULL.
 */
static void
call_done_cb(struct evhttp_request *req, void *arg)
{
	struct etcd_call	*call = arg;
	struct store_etcd	*st = call->store;
	struct json_object	*reply = NULL;
	int			 code;

	code = req != NULL ? evhttp_request_get_response_code(req) : 0;
	if (code == 0) {
		st->current = (st->current + 1) % st->nendpoints;
		if (++call->tries < st->nendpoints) {
			call_send(call);
			return;
		}
	} else if (code == 200)
		reply = call_reply_json(req);
	if (call->fn != NULL)
		call->fn(st, reply, call->arg, call->gen);
	json_object_put(reply);
	call_free(call);
}

/* Fail a call that could not even be sent, from outside the sender. */
static void
call_fail_later_cb(evutil_socket_t fd, short events, void *arg)
{
	(void)fd;
	(void)events;
	call_done_cb(NULL, arg);
}

/* Send a call on the current endpoint. */
static void
call_send(struct etcd_call *call)
{
	struct store_etcd	*st = call->store;
	struct etcd_endpoint	*ep = &st->endpoints[st->current];
	struct evhttp_connection *conn;
	struct evhttp_request	*req;
	struct evkeyvalq	*headers;
	struct timeval		 now = { 0, 0 };

	conn = call->keepalive ? endpoint_conn(st, ep, &ep->keepalive,
	    ETCD_CALL_TIMEOUT) : endpoint_conn(st, ep,
	    &ep->pool[call->lane % ETCD_POOL], ETCD_CALL_TIMEOUT);
	if (conn == NULL || (req = evhttp_request_new(call_done_cb,
	    call)) == NULL) {
		if (event_base_once(st->evbase, -1, EV_TIMEOUT,
		    call_fail_later_cb, call, &now) == -1)
			fatalx("%s: out of memory", __func__);
		return;
	}
	headers = evhttp_request_get_output_headers(req);
	evhttp_add_header(headers, "Host", ep->host);
	evhttp_add_header(headers, "Content-Type", "application/json");
	evbuffer_add(evhttp_request_get_output_buffer(req), call->body,
	    strlen(call->body));
	/* On failure evhttp has freed req and will not call back. */
	if (evhttp_make_request(conn, req, EVHTTP_REQ_POST, call->path) != 0 &&
	    event_base_once(st->evbase, -1, EV_TIMEOUT, call_fail_later_cb,
	    call, &now) == -1)
		fatalx("%s: out of memory", __func__);
}

/*
 * POST body (which it takes) to path on connection lane of the pool; fn
 * gets the reply, or NULL, with arg and gen.  fn may be NULL for a
 * request whose answer is not needed.  One connection answers in order,
 * so one lock's requests share a lane: a delete is never overtaken by
 * the next put of the same name.
 */
static void
etcd_post(struct store_etcd *st, unsigned lane, const char *path,
    struct json_object *body, etcd_reply_fn fn, void *arg, uint64_t gen)
{
	struct etcd_call	*call;

	if (st->closing) {
		json_object_put(body);
		return;
	}
	if ((call = calloc(1, sizeof *call)) == NULL ||
	    (call->body = strdup(json_object_to_json_string_ext(body,
	    JSON_C_TO_STRING_PLAIN))) == NULL)
		fatalx("%s: out of memory", __func__);
	json_object_put(body);
	call->store = st;
	call->path = path;
	call->fn = fn;
	call->arg = arg;
	call->gen = gen;
	call->lane = lane;
	call->keepalive = strcmp(path, "/v3/lease/keepalive") == 0;
	TAILQ_INSERT_TAIL(&st->calls, call, entry);
	call_send(call);
}

/* Add a field to a json object and return the object. */
static struct json_object *
obj_with(struct json_object *obj, const char *key, struct json_object *value)
{
	json_object_object_add(obj, key, value);
	return obj;
}

/* The range request of every key under prefix, oldest first. */
static struct json_object *
range_request(const char *prefix)
{
	struct json_object	*range = json_object_new_object();
	char			 end[ETCD_KEY_MAX];

	if (etcd_range_end(prefix, end, sizeof end) == -1)
		fatalx("%s: prefix %s has no end", __func__, prefix);
	obj_with(range, "key", etcd_key_new(prefix));
	obj_with(range, "range_end", etcd_key_new(end));
	obj_with(range, "sort_order", json_object_new_string("ASCEND"));
	obj_with(range, "sort_target", json_object_new_string("CREATE"));
	obj_with(range, "limit", etcd_int64_new(ETCD_QUEUE_MAX));
	return range;
}

/* A txn that deletes key only if it is still the take created at rev. */
static struct json_object *
release_request(const char *key, int64_t rev)
{
	struct json_object	*cmp, *del, *txn = json_object_new_object();

	cmp = json_object_new_object();
	obj_with(cmp, "key", etcd_key_new(key));
	obj_with(cmp, "target", json_object_new_string("CREATE"));
	obj_with(cmp, "result", json_object_new_string("EQUAL"));
	obj_with(cmp, "create_revision", etcd_int64_new(rev));
	del = obj_with(json_object_new_object(), "request_delete_range",
	    obj_with(json_object_new_object(), "key", etcd_key_new(key)));
	obj_with(txn, "compare", json_object_new_array());
	json_object_array_add(json_object_object_get(txn, "compare"), cmp);
	obj_with(txn, "success", json_object_new_array());
	json_object_array_add(json_object_object_get(txn, "success"), del);
	return txn;
}

/* Delete a take's key, guarded by its create_revision; no answer needed. */
static void
store_delete_key(struct store_etcd *st, unsigned lane, const char *key,
    int64_t rev)
{
	if (rev > 0)
		etcd_post(st, lane, "/v3/kv/txn", release_request(key, rev),
		    NULL, NULL, 0);
}

/* The prefix of one lock's queue, "<prefix><name>/". */
static void
lock_prefix(const struct store_etcd *st, const char *name, char *out,
    size_t size)
{
	snprintf(out, size, "%s%s/", st->prefix, name);
}

/* The pooled connection of a lock's requests: from a hash of its name. */
static unsigned
el_lane(const struct etcd_lock *el)
{
	const unsigned char	*p;
	unsigned		 h = 5381;

	for (p = (const unsigned char *)el->name; *p != '\0'; p++)
		h = h * 33 + *p;
	return h;
}

/* Take a place out of its lock's list; one whose put is unanswered stays. */
static void
resv_unlist(struct etcd_lock *el, struct etcd_resv *r)
{
	TAILQ_REMOVE(&el->resvs, r, entry);
	r->listed = 0;
	el->store->nresvs--;
	if (!r->putting)
		free(r);
}

/*
 * Give up a place: its key goes (unless gone with its lease), or, with
 * its put unanswered, goes at the answer.
 */
static void
resv_let_go(struct etcd_lock *el, struct etcd_resv *r)
{
	struct store_etcd	*st = el->store;

	r->req = NULL;
	if (r->revision > 0 && r->lease == st->lease)
		store_delete_key(st, el_lane(el), r->key, r->revision);
	resv_unlist(el, r);
}

/* Free a lock's state once nothing refers to it any more. */
static void
el_unref(struct etcd_lock *el)
{
	struct etcd_resv	*r;

	if (--el->refs > 0)
		return;
	while ((r = TAILQ_FIRST(&el->resvs)) != NULL)
		resv_unlist(el, r);
	TAILQ_REMOVE(&el->store->locks, el, entry);
	if (el->watch != NULL)
		evhttp_connection_free(el->watch);
	evbuffer_free(el->watch_buf);
	event_free(el->later);
	json_object_put(el->holders);
	free(el->joiners);
	free(el);
}

/* Stop the lock's watch, if it has one; only from outside its callbacks. */
static void
el_unwatch(struct etcd_lock *el)
{
	if (el->watch == NULL)
		return;
	evhttp_connection_free(el->watch);
	el->watch = NULL;
	el->own_watch = 0;
	evbuffer_drain(el->watch_buf, evbuffer_get_length(el->watch_buf));
}

/* Delete the keys of the holders that joined, unless gone with the lease. */
static void
el_let_joiners_go(struct etcd_lock *el)
{
	size_t	 i;

	for (i = 0; i < el->njoiners; i++) {
		if (el->lease == el->store->lease)
			store_delete_key(el->store, el_lane(el),
			    el->joiners[i].key, el->joiners[i].revision);
	}
	el->njoiners = 0;
	el->join_revision = 0;
	el->joining = 0;
	el->join_refused = 0;
}

/* Give up the lock's key, if it has one, and any wait for it. */
static void
el_let_go(struct etcd_lock *el)
{
	if (el->phase != EL_IDLE)
		el->store->nwaits--;
	el_unwatch(el);
	if (el->revision > 0 && el->lease == el->store->lease)
		store_delete_key(el->store, el_lane(el), el->key,
		    el->revision);
	el_let_joiners_go(el);
	el->revision = 0;
	el->key[0] = '\0';
	el->phase = EL_IDLE;
	el->fresh = 0;
	el->gen++;
	el->later_read = 0;
	el->later_check = 0;
	el->later_verify = 0;
	el->later_own = 0;
	el->later_error = 0;
}

/* Run a step from outside the table's calls: now, on the next loop pass. */
static void
el_defer(struct etcd_lock *el)
{
	struct timeval	 now = { 0, 0 };

	evtimer_add(el->later, &now);
}

/* Run the deferred steps after seconds, as for a read that failed. */
static void
el_defer_after(struct etcd_lock *el, double seconds)
{
	struct timeval	 tv;

	tv.tv_sec = (time_t)seconds;
	tv.tv_usec = (suseconds_t)((seconds - (double)tv.tv_sec) * 1e6);
	evtimer_add(el->later, &tv);
}

/* End the table's wait for this lock with error. */
static void
el_fail_later(struct etcd_lock *el, int error)
{
	el->later_error = error;
	el_defer(el);
}

static void	el_verify_own(struct etcd_lock *);
static void	el_watch_own(struct etcd_lock *);

/* The deferred steps: a failure to report, or the queue to read again. */
static void
el_later_cb(evutil_socket_t fd, short events, void *arg)
{
	struct etcd_lock	*el = arg;
	struct store_etcd	*st = el->store;
	int			 error = el->later_error;

	(void)fd;
	(void)events;
	if (el->lock == NULL)
		return;
	if (error != 0) {
		el_let_go(el);
		locktab_taken(st->base.tab, el->lock, error);
		return;
	}
	if (el->later_read) {
		el->later_read = el->later_check = 0;
		el_unwatch(el);
		el_read_queue(el);
	} else if (el->later_check) {
		el->later_check = 0;
		el_read_queue(el);
	} else if (el->later_verify) {
		el->later_verify = 0;
		el_verify_own(el);
	} else if (el->later_own) {
		/* Last: another step that moved the timer up runs first. */
		el->later_own = 0;
		el_watch_own(el);
	}
	if (el->later_own)
		el_defer_after(el, ETCD_OWN_WATCH_DELAY);
}

/* The holders at the head of a queue as list shows them, from each value. */
static struct json_object *
holder_from_kv(const struct etcd_kv *kv)
{
	struct json_object	*holder;

	if ((holder = json_tokener_parse(kv->value)) == NULL ||
	    !json_object_is_type(holder, json_type_object)) {
		json_object_put(holder);
		holder = json_object_new_object();
	}
	json_object_object_add(holder, "mode",
	    json_object_new_string(proto_mode_name(kv->mode)));
	json_object_object_add(holder, "token",
	    json_object_new_int64(kv->create_revision));
	return holder;
}

/*
 * Read the queue from a range reply's kvs for the lock's take: 1 if the
 * take holds, 0 if it waits (with the key ahead in q), -1 if its key is
 * gone.  The head's holders are kept for the blocking notice.
 */
static int
el_queue_read(struct etcd_lock *el, struct json_object *range,
    struct etcd_queue *q)
{
	struct json_object	*kvs, *holders;
	struct etcd_kv		*kv;
	size_t			 i, n;
	int			 found = 0;

	if ((kv = malloc(sizeof *kv)) == NULL)
		return -1;
	holders = json_object_new_array();
	if (!json_object_object_get_ex(range, "kvs", &kvs) ||
	    !json_object_is_type(kvs, json_type_array))
		kvs = NULL;
	n = kvs != NULL ? json_object_array_length(kvs) : 0;
	for (i = 0; i < n && !found; i++) {
		if (etcd_kv_decode(json_object_array_get_idx(kvs, i),
		    kv) == 0 && strcmp(kv->key, el->key) == 0) {
			el->revision = kv->create_revision;
			found = 1;
		}
	}
	etcd_queue_init(q, el->revision, el->mode);
	for (i = 0; i < n && found; i++) {
		if (etcd_kv_decode(json_object_array_get_idx(kvs, i), kv) != 0)
			continue;
		etcd_queue_add(q, kv);
		if (q->nhead == q->nkeys && kv->create_revision < el->revision)
			json_object_array_add(holders, holder_from_kv(kv));
	}
	free(kv);
	json_object_put(el->holders);
	el->holders = holders;
	if (!found)
		return -1;
	return etcd_queue_granted(q);
}

enum watch_line {
	WATCH_OTHER,
	WATCH_DELETED,		/* the key went, or only a read can tell */
	WATCH_CREATED		/* the watch is in place */
};

/* What a line of a watch stream says. */
static enum watch_line
watch_line_kind(const char *line, size_t len)
{
	struct json_object	*obj, *result = NULL, *events, *ev, *type;
	size_t			 i;
	enum watch_line		 kind = WATCH_OTHER;

	if ((obj = json_tokener_parse(line)) == NULL)
		return len > 0 ? WATCH_DELETED : WATCH_OTHER;
	if (json_object_object_get_ex(obj, "result", &result) &&
	    json_object_object_get_ex(result, "events", &events) &&
	    json_object_is_type(events, json_type_array)) {
		for (i = 0; i < json_object_array_length(events); i++) {
			ev = json_object_array_get_idx(events, i);
			if (json_object_object_get_ex(ev, "type", &type) &&
			    strcmp(json_object_get_string(type), "DELETE") == 0)
				kind = WATCH_DELETED;
		}
	} else if (result != NULL && json_object_object_get_ex(result,
	    "created", &ev) && json_object_get_boolean(ev))
		kind = WATCH_CREATED;
	/* A compaction or a cancel: only a new read can tell. */
	if (json_object_object_get_ex(obj, "error", &ev) ||
	    etcd_int64(result, "compact_revision") > 0 ||
	    (json_object_object_get_ex(result, "canceled", &ev) &&
	    json_object_get_boolean(ev)))
		kind = WATCH_DELETED;
	json_object_put(obj);
	return kind;
}

/* Data on a watch stream: on the delete ahead, read the queue again. */
static void
watch_chunk_cb(struct evhttp_request *req, void *arg)
{
	struct etcd_lock	*el = arg;
	char			*line;
	size_t			 len;

	evbuffer_add_buffer(el->watch_buf,
	    evhttp_request_get_input_buffer(req));
	while ((line = evbuffer_readln(el->watch_buf, &len,
	    EVBUFFER_EOL_LF)) != NULL) {
		if (el->own_watch) {
			/* Its history is replayed: only a delete is news. */
			if (watch_line_kind(line, len) == WATCH_DELETED)
				el->later_verify = 1;
			free(line);
			continue;
		}
		switch (watch_line_kind(line, len)) {
		case WATCH_DELETED:
			el->later_read = 1;
			break;
		case WATCH_CREATED:
			/*
			 * A delete before the watch was in place comes only
			 * with etcd's unsynced watchers, up to 100 ms late:
			 * a read now tells at once.
			 */
			el->later_check = 1;
			break;
		case WATCH_OTHER:
			break;
		}
		free(line);
	}
	/* A line past the bound is not etcd's: read the queue instead. */
	if (evbuffer_get_length(el->watch_buf) > 1 << 20) {
		if (el->own_watch)
			el->later_verify = 1;
		else
			el->later_read = 1;
	}
	if (el->later_read || el->later_check || el->later_verify)
		el_defer(el);
}

/* A watch stream ended (an endpoint died, or a timeout): read anew. */
static void
watch_done_cb(struct evhttp_request *req, void *arg)
{
	struct etcd_lock	*el = arg;

	(void)req;
	if (el->own_watch) {
		el->own_watch = 0;	/* the read makes it anew */
		el->later_verify = 1;
	} else
		el->later_read = 1;
	el_defer(el);
}

/*
 * Watch key from start_revision, or with 0 from etcd's next revision; own
 * says it is the lock's own held key.  -1 if out of memory.
 */
static int
el_watch(struct etcd_lock *el, const char *key, int64_t start_revision,
    int own)
{
	struct store_etcd	*st = el->store;
	struct etcd_endpoint	*ep = &st->endpoints[st->current];
	struct json_object	*create, *body;
	struct evhttp_request	*req;
	const char		*text;

	el_unwatch(el);
	el->own_watch = own;
	create = json_object_new_object();
	obj_with(create, "key", etcd_key_new(key));
	if (start_revision > 0)
		obj_with(create, "start_revision",
		    etcd_int64_new(start_revision));
	body = obj_with(json_object_new_object(), "create_request", create);
	el->watch = endpoint_conn(st, ep, &el->watch, ETCD_WATCH_TIMEOUT);
	if (el->watch == NULL || (req = evhttp_request_new(watch_done_cb,
	    el)) == NULL) {
		json_object_put(body);
		return -1;
	}
	evhttp_request_set_chunked_cb(req, watch_chunk_cb);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Host",
	    ep->host);
	text = json_object_to_json_string_ext(body, JSON_C_TO_STRING_PLAIN);
	evbuffer_add(evhttp_request_get_output_buffer(req), text,
	    strlen(text));
	json_object_put(body);
	if (evhttp_make_request(el->watch, req, EVHTTP_REQ_POST,
	    "/v3/watch") != 0) {
		if (own)
			el->later_verify = 1;
		else
			el->later_read = 1;
		el_defer(el);
	}
	return 0;
}

/*
 * Watch the key ahead of the lock's take, from etcd's next revision: a
 * start in the past would make it an unsynced watcher, and the read when
 * the watch is in place (WATCH_CREATED) covers a delete before it.
 */
static void
el_watch_ahead(struct etcd_lock *el, const char *key)
{
	if (el_watch(el, key, 0, 0) == -1)
		el_fail_later(el, -ENOMEM);
}

/*
 * Watch the held key for a delete that did not come from this daemon (by
 * hand, or another client's txn), from the revision after its creation so
 * that one before the watch is replayed: an unsynced watcher's 100 ms
 * are nothing to a holder that would otherwise never hear of it.
 */
static void
el_watch_own(struct etcd_lock *el)
{
	if (el->phase != EL_OWNED || el->revision <= 0)
		return;
	if (el_watch(el, el->key, el->revision + 1, 1) == -1) {
		el->later_verify = 1;	/* try again, later */
		el_defer_after(el, ETCD_OWN_WATCH_DELAY);
	}
}

/*
 * Whether the take waits behind a place this daemon holds for a request
 * behind it (a take put anew after its places, as after a failed put):
 * those places go, losing their turn in etcd rather than blocking their
 * own head, and the queue is read again once they are deleted.
 */
static int
el_behind_own_places(struct etcd_lock *el, const struct etcd_queue *q)
{
	struct etcd_resv	*r, *next;
	int			 found = 0;

	TAILQ_FOREACH(r, &el->resvs, entry) {
		if (r->revision == q->blocker_revision)
			found = 1;
	}
	if (!found)
		return 0;
	for (r = TAILQ_FIRST(&el->resvs); r != NULL; r = next) {
		next = TAILQ_NEXT(r, entry);
		if (r->revision > 0 && r->revision < el->revision)
			resv_let_go(el, r);
	}
	el->later_read = 1;
	el_defer(el);
	return 1;
}

/*
 * Act on a read of the lock's queue: hold (and tell the table), watch
 * the key ahead, or fail the wait if etcd cannot be read or the key is
 * gone.  Stale answers (an older take's, a closed lock's) are dropped.
 */
static void
el_queue_answer(struct etcd_lock *el, struct json_object *range)
{
	struct store_etcd	*st = el->store;
	struct etcd_queue	 q;
	int			 held, first;

	if ((held = el_queue_read(el, range, &q)) < 0) {
		el_fail_later(el, -ENOLINK);
		return;
	}
	if (held) {
		el->phase = EL_OWNED;
		el->fresh = 1;
		el_unwatch(el);
		el->later_own = 1;
		el_defer_after(el, ETCD_OWN_WATCH_DELAY);
		locktab_taken(st->base.tab, el->lock, 0);
		return;
	}
	if (el_behind_own_places(el, &q))
		return;
	/* A check read that finds the same key ahead keeps its watch. */
	if (el->phase == EL_WAITING && el->watch != NULL &&
	    el->watched == q.blocker_revision)
		return;
	first = el->phase == EL_PUTTING;
	el->phase = EL_WAITING;
	el->watched = q.blocker_revision;
	el_watch_ahead(el, q.blocker);
	/* Last: the hook may end the wait, and close the lock. */
	if (first && st->hooks.queued != NULL)
		st->hooks.queued(el->lock, st->hooks.arg);
}

/* Whether an answer still belongs to the lock's current take. */
static int
el_current(struct etcd_lock *el, uint64_t gen)
{
	return el->lock != NULL && el->gen == gen && el->phase != EL_IDLE;
}

/* The answer to a read of the queue while waiting. */
static void
el_range_cb(struct store_etcd *st, struct json_object *reply, void *arg,
    uint64_t gen)
{
	struct etcd_lock	*el = arg;

	(void)st;
	if (el_current(el, gen)) {
		/*
		 * Its key stays on the lease while the lease lives: keep the
		 * place and read again, until the lease is lost (which fails
		 * the wait) rather than give up on one endpoint's hiccup.
		 */
		if (reply == NULL) {
			el->later_read = 1;
			el_defer_after(el, 0.5);
		} else
			el_queue_answer(el, reply);
	}
	el_unref(el);
}

/* Read the lock's queue again, after the key ahead went or the watch did. */
static void
el_read_queue(struct etcd_lock *el)
{
	char	 prefix[ETCD_KEY_MAX];

	lock_prefix(el->store, el->name, prefix, sizeof prefix);
	el->refs++;
	etcd_post(el->store, el_lane(el), "/v3/kv/range",
	    range_request(prefix), el_range_cb, el, el->gen);
}

/* Whether a range reply shows the lock's held key, the same incarnation. */
static int
el_key_there(const struct etcd_lock *el, struct json_object *reply)
{
	struct json_object	*kvs;
	struct etcd_kv		*kv;
	size_t			 i, n;
	int			 there = 0;

	if (!json_object_object_get_ex(reply, "kvs", &kvs) ||
	    !json_object_is_type(kvs, json_type_array))
		return 0;
	if ((kv = malloc(sizeof *kv)) == NULL)
		return 1;	/* no news is not a loss */
	n = json_object_array_length(kvs);
	for (i = 0; i < n && !there; i++) {
		there = etcd_kv_decode(json_object_array_get_idx(kvs, i),
		    kv) == 0 && strcmp(kv->key, el->key) == 0 &&
		    kv->create_revision == el->revision;
	}
	free(kv);
	return there;
}

/*
 * The held key went, and not by this daemon's hand: its holders are told
 * as when the lease goes (the hooks' lost), for etcd may grant it anew.
 */
static void
el_own_key_gone(struct etcd_lock *el)
{
	struct store_etcd	*st = el->store;

	log_warnx("etcd: key %s of held lock %s was deleted outside locksd: "
	    "its holders lost it", el->key, el->name);
	el_unwatch(el);
	el->revision = 0;	/* nothing of it left to delete */
	el->refs++;
	if (st->hooks.lost != NULL)
		st->hooks.lost(el->lock, st->hooks.arg);
	if (el->lock != NULL && el->phase == EL_OWNED)
		el_let_go(el);
	el_unref(el);
}

/* The answer to a read of the held key: watch on, or tell its loss. */
static void
el_verify_cb(struct store_etcd *st, struct json_object *reply, void *arg,
    uint64_t gen)
{
	struct etcd_lock	*el = arg;

	(void)st;
	if (el_current(el, gen) && el->phase == EL_OWNED) {
		/* No endpoint answered: the lease's deadline decides. */
		if (reply == NULL) {
			el->later_verify = 1;
			el_defer_after(el, 0.5);
		} else if (el_key_there(el, reply))
			el_watch_own(el);
		else
			el_own_key_gone(el);
	}
	el_unref(el);
}

/* Read the held key, after its watch saw a delete or ended. */
static void
el_verify_own(struct etcd_lock *el)
{
	struct json_object	*range;

	if (el->phase != EL_OWNED || el->revision <= 0)
		return;
	range = obj_with(json_object_new_object(), "key",
	    etcd_key_new(el->key));
	el->refs++;
	etcd_post(el->store, el_lane(el), "/v3/kv/range", range,
	    el_verify_cb, el, el->gen);
}

/* The range response inside a txn reply's second response. */
static struct json_object *
txn_range(struct json_object *reply)
{
	struct json_object	*responses, *resp, *range;

	if (reply == NULL || !json_object_object_get_ex(reply, "responses",
	    &responses) || !json_object_is_type(responses, json_type_array) ||
	    json_object_array_length(responses) != 2)
		return NULL;
	resp = json_object_array_get_idx(responses, 1);
	if (!json_object_object_get_ex(resp, "response_range", &range))
		return NULL;
	return range;
}

/*
 * Whether the put made the take's key anew (its create_revision is the
 * txn's): a reused name may have met a key a stale put left, which the
 * stale put's cleanup will delete.
 */
static int
el_put_created(struct etcd_lock *el, struct json_object *range,
    int64_t revision)
{
	struct etcd_queue	 q;

	return el_queue_read(el, range, &q) >= 0 && el->revision == revision;
}

/* Queue the take again under a name of its own, the old key let go. */
static void
el_requeue(struct etcd_lock *el)
{
	enum proto_mode	 mode = el->mode;

	el_let_go(el);
	el->fresh_name = 1;
	el->mode = mode;
	el->store->nwaits++;
	el->phase = EL_LEASING;
	if (el->store->lease != 0)
		el_start_put(el);
	else
		lease_grant(el->store);
}

/* A take's put in flight: its key, in case the take is gone by the answer. */
struct etcd_put {
	struct etcd_lock	*el;
	int			 join;		/* a joiner's, not the take's */
	struct etcd_resv	*resv;		/* a waiter's place's, or NULL */
	char			 key[ETCD_KEY_MAX];
};

static void	el_join_answer(struct etcd_lock *, const char *,
		    struct json_object *, int64_t);

/* The revision of a txn's reply: of its one write, the put, if any. */
static int64_t
txn_revision(struct json_object *reply)
{
	return etcd_int64(json_object_object_get(reply, "header"),
	    "revision");
}

/*
 * Whether a put's answer came after its take (or join) was let go; the
 * key it made, if it made one, is deleted then.
 */
static int
put_stale(struct etcd_put *put, struct json_object *range,
    int64_t revision, uint64_t gen)
{
	struct etcd_lock	*el = put->el;

	if (el_current(el, gen))
		return 0;
	/* The txn's one write is the put: its revision is the key's. */
	if (range != NULL)
		store_delete_key(el->store, el_lane(el), put->key, revision);
	return 1;
}

/* The answer to a take's put and first read, for a take still current. */
static void
el_put_answer(struct etcd_lock *el, struct json_object *range,
    int64_t revision)
{
	if (range == NULL)
		el_fail_later(el, -EHOSTUNREACH);
	else if (!el_put_created(el, range, revision))
		el_requeue(el);
	else
		el_queue_answer(el, range);
}

/*
 * The answer to a place's put: the place keeps the key's revision; one
 * that went meanwhile has the key deleted, and one the take adopted goes
 * on as the take's put.
 */
static void
resv_put_answer(struct etcd_put *put, struct json_object *range,
    int64_t revision)
{
	struct etcd_lock	*el = put->el;
	struct etcd_resv	*r = put->resv;
	uint64_t		 gen = r->adopted_gen;

	r->putting = 0;
	if (r->adopted) {
		free(r);
		el->puts--;
		if (!put_stale(put, range, revision, gen))
			el_put_answer(el, range, revision);
	} else if (!r->listed || el->lock == NULL) {
		if (range != NULL)
			store_delete_key(el->store, el_lane(el), put->key,
			    revision);
		free(r);
	} else if (range != NULL)
		r->revision = revision;
}

/* The answer to a put and read: a take's, a joiner's or a place's. */
static void
el_put_cb(struct store_etcd *st, struct json_object *reply, void *arg,
    uint64_t gen)
{
	struct etcd_put		*put = arg;
	struct etcd_lock	*el = put->el;
	struct json_object	*range = txn_range(reply);
	int64_t			 revision = txn_revision(reply);

	(void)st;
	if (put->resv != NULL) {
		resv_put_answer(put, range, revision);
		free(put);
		el_unref(el);
		return;
	}
	if (!put->join)
		el->puts--;
	if (!put_stale(put, range, revision, gen)) {
		if (put->join)
			el_join_answer(el, put->key, range, revision);
		else
			el_put_answer(el, range, revision);
	}
	free(put);
	el_unref(el);
}

/* The value of a key: who asks, as the waiting request says. */
static struct json_object *
el_value(struct etcd_lock *el, struct lock_req *who)
{
	struct store_etcd	*st = el->store;
	struct json_object	*value = NULL;

	if (st->hooks.describe != NULL && who != NULL)
		value = st->hooks.describe(who, st->hooks.arg);
	if (value == NULL)
		value = json_object_new_object();
	json_object_object_add(value, "node", json_object_new_string(st->node));
	return value;
}

/* A txn that puts key on the lease, valued for who, and reads the queue. */
static struct json_object *
put_txn(struct etcd_lock *el, const char *key, struct lock_req *who)
{
	struct store_etcd	*st = el->store;
	struct json_object	*put, *ops, *value;
	char			 prefix[ETCD_KEY_MAX], text[ETCD_VALUE_MAX * 2];
	const char		*raw;

	value = el_value(el, who);
	raw = json_object_to_json_string_ext(value, JSON_C_TO_STRING_PLAIN);
	if (etcd_b64_encode(raw, strlen(raw), text, sizeof text) == 0)
		text[0] = '\0';
	json_object_put(value);
	put = json_object_new_object();
	obj_with(put, "key", etcd_key_new(key));
	obj_with(put, "value", json_object_new_string(text));
	obj_with(put, "lease", etcd_int64_new(st->lease));
	lock_prefix(st, el->name, prefix, sizeof prefix);
	ops = json_object_new_array();
	json_object_array_add(ops, obj_with(json_object_new_object(),
	    "request_put", put));
	json_object_array_add(ops, obj_with(json_object_new_object(),
	    "request_range", range_request(prefix)));
	return obj_with(json_object_new_object(), "success", ops);
}

/* Put the take's key on the lease and read the queue, in one txn. */
static void
el_start_put(struct etcd_lock *el)
{
	struct store_etcd	*st = el->store;
	struct json_object	*txn;
	struct etcd_put		*pending;

	/*
	 * One name per lock and lease, reused take after take: etcd keeps
	 * every name it saw in its index until a compaction.  Not while a
	 * put of it is unanswered, which a stale cleanup could delete.
	 */
	if (el->puts > 0 || el->fresh_name || el->slot == 0)
		el->slot = ++st->seq;
	el->fresh_name = 0;
	el->puts++;
	if (etcd_key_format(el->key, sizeof el->key, st->prefix, el->name,
	    st->lease, el->slot, el->mode) == -1)
		fatalx("%s: key of %s does not fit", __func__, el->name);
	el->lease = st->lease;
	el->revision = 0;
	el->phase = EL_PUTTING;
	txn = put_txn(el, el->key, lock_first_waiter(el->lock));
	if ((pending = calloc(1, sizeof *pending)) == NULL)
		fatal("calloc");
	pending->el = el;
	memcpy(pending->key, el->key, sizeof pending->key);
	el->refs++;
	etcd_post(st, el_lane(el), "/v3/kv/txn", txn, el_put_cb, pending,
	    el->gen);
}

/* Start the puts of every take that waited for the lease. */
static void
store_leased(struct store_etcd *st)
{
	struct etcd_lock	*el;

	TAILQ_FOREACH(el, &st->locks, entry) {
		if (el->lock != NULL && el->phase == EL_LEASING)
			el_start_put(el);
	}
}

/* Fail every take that waited for the lease: etcd is not reachable. */
static void
store_lease_failed(struct store_etcd *st)
{
	struct etcd_lock	*el;

	TAILQ_FOREACH(el, &st->locks, entry) {
		if (el->lock != NULL && el->phase == EL_LEASING)
			el_fail_later(el, -EHOSTUNREACH);
	}
}

/* Arm the lease's deadline: the TTL after the last good keepalive's send. */
static void
lease_arm_deadline(struct store_etcd *st)
{
	double		 left = st->lease_ok_sent + st->ttl - clock_monotonic();
	struct timeval	 tv;

	if (left < 0)
		left = 0;
	tv.tv_sec = (time_t)left;
	tv.tv_usec = (suseconds_t)((left - (double)tv.tv_sec) * 1e6);
	evtimer_add(st->deadline_ev, &tv);
}

/* The answer to a lease grant. */
static void
lease_grant_cb(struct store_etcd *st, struct json_object *reply, void *arg,
    uint64_t gen)
{
	int64_t	 id = etcd_int64(reply, "ID");

	(void)arg;
	(void)gen;
	st->leasing = 0;
	if (st->closing)
		return;
	if (reply == NULL || id == 0) {
		log_warnx("etcd: cannot grant a lease: no endpoint answers");
		store_lease_failed(st);
		return;
	}
	st->lease = id;
	st->lease_ok_sent = st->keepalive_sent;
	lease_arm_deadline(st);
	log_info("etcd: lease %" PRIx64 " granted, ttl %d s", (uint64_t)id,
	    st->ttl);
	store_leased(st);
}

/* Ask for the daemon's lease, unless a grant is in flight. */
static void
lease_grant(struct store_etcd *st)
{
	struct json_object	*body;

	if (st->leasing)
		return;
	st->leasing = 1;
	st->keepalive_sent = clock_monotonic();
	body = obj_with(json_object_new_object(), "TTL",
	    etcd_int64_new(st->ttl));
	etcd_post(st, 0, "/v3/lease/grant", body, lease_grant_cb, NULL, 0);
}

/* The answer to a revoke of a lease lost before: done when it came. */
static void
lease_revoke_cb(struct store_etcd *st, struct json_object *reply, void *arg,
    uint64_t gen)
{
	(void)arg;
	if (reply != NULL && (int64_t)gen == st->old_lease)
		st->old_lease = 0;
}

/*
 * The lease is lost: every holder is told (the hooks' lost), every
 * waiter fails, and the next take asks for a new lease.
 */
static void
lease_lost(struct store_etcd *st)
{
	struct etcd_lock	*el;

	log_warnx("etcd: lease %" PRIx64 " lost: no keepalive succeeded "
	    "within %d s", (uint64_t)st->lease, st->ttl);
	st->old_lease = st->lease;
	st->lease = 0;
	TAILQ_FOREACH(el, &st->locks, entry)
		el->lost_pending = el->lock != NULL && el->phase != EL_IDLE;
	/* From the head each time: a lost hook may free other idle locks. */
again:
	TAILQ_FOREACH(el, &st->locks, entry) {
		if (!el->lost_pending)
			continue;
		el->lost_pending = 0;
		if (el->phase == EL_OWNED) {
			el->revision = 0;	/* gone with the lease */
			if (st->hooks.lost != NULL)
				st->hooks.lost(el->lock, st->hooks.arg);
			goto again;
		}
		el_fail_later(el, -ENOLINK);
	}
}

/* The lease's deadline passed with no keepalive answered in time. */
static void
lease_deadline_cb(evutil_socket_t fd, short events, void *arg)
{
	struct store_etcd	*st = arg;

	(void)fd;
	(void)events;
	if (st->lease != 0)
		lease_lost(st);
}

/* The answer to a keepalive: a TTL left means the lease lives on. */
static void
keepalive_cb(struct store_etcd *st, struct json_object *reply, void *arg,
    uint64_t gen)
{
	struct json_object	*result = NULL;

	(void)arg;
	if ((int64_t)gen != st->lease || st->lease == 0)
		return;
	if (reply != NULL)
		json_object_object_get_ex(reply, "result", &result);
	if (result != NULL && etcd_int64(result, "TTL") > 0) {
		st->lease_ok_sent = st->keepalive_sent;
		lease_arm_deadline(st);
	} else if (result != NULL)
		lease_lost(st);		/* etcd says it expired */
}

/* Every TTL/3: keep the lease alive, and revoke one lost before. */
static void
keepalive_tick_cb(evutil_socket_t fd, short events, void *arg)
{
	struct store_etcd	*st = arg;
	struct json_object	*body;

	(void)fd;
	(void)events;
	if (st->lease != 0) {
		st->keepalive_sent = clock_monotonic();
		body = obj_with(json_object_new_object(), "ID",
		    etcd_int64_new(st->lease));
		etcd_post(st, 0, "/v3/lease/keepalive", body, keepalive_cb,
		    NULL, (uint64_t)st->lease);
	}
	if (st->old_lease != 0 && st->lease != 0) {
		body = obj_with(json_object_new_object(), "ID",
		    etcd_int64_new(st->old_lease));
		etcd_post(st, 0, "/v3/lease/revoke", body, lease_revoke_cb,
		    NULL, (uint64_t)st->old_lease);
	}
}

/* The store's open: a name only; its state points at an etcd_lock. */
static int
etcd_lock_open(struct lock_store *base, struct lock *lock, const char *name,
    void *object, void *state)
{
	struct store_etcd	*st = (struct store_etcd *)base;
	struct etcd_lock	*el;
	size_t			 len = strlen(name) + 1;

	if (object != NULL)
		return -EOPNOTSUPP;
	if ((el = calloc(1, sizeof *el + len)) == NULL ||
	    (el->watch_buf = evbuffer_new()) == NULL ||
	    (el->later = evtimer_new(st->evbase, el_later_cb, el)) == NULL) {
		if (el != NULL)
			evbuffer_free(el->watch_buf);
		free(el);
		return -ENOMEM;
	}
	memcpy(el->name, name, len);
	el->store = st;
	el->lock = lock;
	el->refs = 1;
	TAILQ_INIT(&el->resvs);
	TAILQ_INSERT_TAIL(&st->locks, el, entry);
	*(struct etcd_lock **)state = el;
	return 0;
}

static struct etcd_lock *
state_lock(void *state)
{
	return *(struct etcd_lock **)state;
}

/* The store's close: let go of the key; the state lives on for calls. */
static void
etcd_lock_close(void *state)
{
	struct etcd_lock	*el = state_lock(state);
	struct etcd_resv	*r;

	el_let_go(el);
	while ((r = TAILQ_FIRST(&el->resvs)) != NULL)
		resv_let_go(el, r);
	el->lock = NULL;
	event_del(el->later);
	el_unref(el);
}

/* The store's take: only a take etcd granted, once, in its mode. */
static int
etcd_lock_take(void *state, enum proto_mode mode)
{
	struct etcd_lock	*el = state_lock(state);

	if (el->phase != EL_OWNED || !el->fresh || el->mode != mode)
		return -EWOULDBLOCK;
	el->fresh = 0;
	el->store->base.next_token = el->revision;
	return 0;
}

/*
 * Whether a join's key, put at revision, holds now: no exclusive key
 * before it (a shared take's rule in etcd_queue_add).
 */
static int
join_granted(struct json_object *range, int64_t revision)
{
	struct json_object	*kvs;
	struct etcd_queue	 q;
	struct etcd_kv		*kv;
	size_t			 i, n;

	if (!json_object_object_get_ex(range, "kvs", &kvs) ||
	    !json_object_is_type(kvs, json_type_array) ||
	    (kv = malloc(sizeof *kv)) == NULL)
		return 0;
	etcd_queue_init(&q, revision, PROTO_SHARED);
	n = json_object_array_length(kvs);
	for (i = 0; i < n; i++) {
		if (etcd_kv_decode(json_object_array_get_idx(kvs, i), kv) == 0)
			etcd_queue_add(&q, kv);
	}
	free(kv);
	return etcd_queue_granted(&q);
}

/* Keep a granted join's key, to delete with the take's. */
static void
el_add_joiner(struct etcd_lock *el, const char *key, int64_t revision)
{
	struct etcd_joiner	*j;

	j = reallocarray(el->joiners, el->njoiners + 1, sizeof *j);
	if (j == NULL)
		fatal("reallocarray");
	el->joiners = j;
	snprintf(j[el->njoiners].key, sizeof j->key, "%s", key);
	j[el->njoiners++].revision = revision;
}

/* A join's key holds: keep it, and have the table grant the joiner. */
static void
el_join_granted(struct etcd_lock *el, const char *key, int64_t revision)
{
	el_add_joiner(el, key, revision);
	el->join_revision = revision;
	locktab_joined(el->store->base.tab, el->lock);
	/* Not taken (its waiter went): a later joiner asks anew. */
	el->join_revision = 0;
}

/*
 * A join's key is behind an exclusive one (or etcd did not answer): it
 * goes, and joiners wait for this daemon's take to end.
 */
static void
el_join_refused(struct etcd_lock *el, const char *key, int64_t revision)
{
	struct store_etcd	*st = el->store;

	el->join_refused = 1;
	if (key != NULL)
		store_delete_key(st, el_lane(el), key, revision);
	/* Last: the hook may end the wait, and close the lock. */
	if (st->hooks.queued != NULL)
		st->hooks.queued(el->lock, st->hooks.arg);
}

/*
 * The answer to a join's put and read: a key with no exclusive one
 * before it holds, and the table grants the joiner with its revision; one
 * behind an exclusive key goes, and joiners wait for the take to end.
 */
static void
el_join_answer(struct etcd_lock *el, const char *key,
    struct json_object *range, int64_t revision)
{
	el->joining = 0;
	if (range != NULL && join_granted(range, revision))
		el_join_granted(el, key, revision);
	else
		el_join_refused(el, range != NULL ? key : NULL, revision);
}

/* Put a key of its own for a shared request that would join the take. */
static void
el_start_join(struct etcd_lock *el)
{
	struct store_etcd	*st = el->store;
	struct etcd_put		*pending;

	if ((pending = calloc(1, sizeof *pending)) == NULL)
		fatal("calloc");
	if (etcd_key_format(pending->key, sizeof pending->key, st->prefix,
	    el->name, st->lease, ++st->seq, PROTO_SHARED) == -1)
		fatalx("%s: key of %s does not fit", __func__, el->name);
	pending->el = el;
	pending->join = 1;
	el->joining = 1;
	el->refs++;
	etcd_post(st, el_lane(el), "/v3/kv/txn", put_txn(el, pending->key,
	    lock_first_waiter(el->lock)), el_put_cb, pending, el->gen);
}

/*
 * The store's join: a shared request joins the held take only with a
 * key of its own that etcd says holds, so that its token is a revision
 * of its own and it never passes an exclusive take queued before it.
 */
static int
etcd_lock_join(void *state, enum proto_mode mode)
{
	struct etcd_lock	*el = state_lock(state);
	struct store_etcd	*st = el->store;

	(void)mode;
	if (el->join_revision > 0) {
		st->base.next_token = el->join_revision;
		el->join_revision = 0;
		return 0;
	}
	if (el->phase != EL_OWNED || el->lease != st->lease)
		el->join_refused = 1;
	if (!el->joining && !el->join_refused)
		el_start_join(el);
	return -EWOULDBLOCK;
}

/* The store's drop: nobody holds it now, so the key goes. */
static void
etcd_lock_drop(void *state)
{
	el_let_go(state_lock(state));
}

/*
 * Make the place held for the head of the table's queue the take's key,
 * if it has one in the take's mode on the current lease: 1 if so, with
 * the queue read (or the place's put) under way, 0 to put a new key.
 */
static int
el_adopt(struct etcd_lock *el)
{
	struct store_etcd	*st = el->store;
	struct lock_req		*head = lock_first_waiter(el->lock);
	struct etcd_resv	*r;

	TAILQ_FOREACH(r, &el->resvs, entry) {
		if (r->req == head)
			break;
	}
	if (r == NULL || head == NULL)
		return 0;
	/* A place's lease is never 0: none is held without a lease. */
	if (r->mode != el->mode || r->lease != st->lease ||
	    (!r->putting && r->revision == 0)) {
		resv_let_go(el, r);
		return 0;
	}
	memcpy(el->key, r->key, sizeof el->key);
	el->lease = r->lease;
	el->revision = r->revision;
	el->phase = EL_PUTTING;
	if (r->putting) {
		/* Its answer goes on as the take's put. */
		r->adopted = 1;
		r->adopted_gen = el->gen;
		el->puts++;
	}
	resv_unlist(el, r);
	if (el->revision > 0)
		el_read_queue(el);
	return 1;
}

/* The store's wait: queue a new key, or keep the one queued in mode. */
static void
etcd_lock_wait(void *state, enum proto_mode mode)
{
	struct etcd_lock	*el = state_lock(state);
	struct store_etcd	*st = el->store;

	if (el->phase != EL_IDLE && el->mode == mode && el->phase != EL_OWNED)
		return;
	if (el->phase == EL_OWNED && el->fresh && el->mode == mode) {
		el->later_read = 1;	/* held already: say so, later */
		el_defer(el);
		return;
	}
	el_let_go(el);
	el->mode = mode;
	if (el_adopt(el)) {
		st->nwaits++;
		return;
	}
	if (st->nwaits >= st->max_waits) {
		el_fail_later(el, -EUSERS);
		return;
	}
	st->nwaits++;
	el->phase = EL_LEASING;
	if (st->lease != 0)
		el_start_put(el);
	else
		lease_grant(st);
}

/*
 * The store's queued: a request waits behind the lock's take, so hold its
 * place in etcd's queue now, with a key of its own.  Without a take, a
 * lease, or room under --etcd-max-waits, it queues in etcd only when
 * its turn on this daemon comes.
 */
static void
etcd_lock_queued(void *state, struct lock_req *req, enum proto_mode mode)
{
	struct etcd_lock	*el = state_lock(state);
	struct store_etcd	*st = el->store;
	struct etcd_resv	*r;
	struct etcd_put		*pending;

	if (el->lock == NULL || el->phase == EL_IDLE || st->lease == 0 ||
	    st->nwaits + st->nresvs >= st->max_waits)
		return;
	if ((r = calloc(1, sizeof *r)) == NULL ||
	    (pending = calloc(1, sizeof *pending)) == NULL)
		fatal("calloc");
	if (etcd_key_format(r->key, sizeof r->key, st->prefix, el->name,
	    st->lease, ++st->seq, mode) == -1)
		fatalx("%s: key of %s does not fit", __func__, el->name);
	r->req = req;
	r->mode = mode;
	r->lease = st->lease;
	r->putting = r->listed = 1;
	TAILQ_INSERT_TAIL(&el->resvs, r, entry);
	st->nresvs++;
	pending->el = el;
	pending->resv = r;
	memcpy(pending->key, r->key, sizeof pending->key);
	el->refs++;
	etcd_post(st, el_lane(el), "/v3/kv/txn", put_txn(el, r->key, req),
	    el_put_cb, pending, el->gen);
}

/* The store's left: a request left the queue, so its place goes. */
static void
etcd_lock_left(void *state, struct lock_req *req)
{
	struct etcd_lock	*el = state_lock(state);
	struct etcd_resv	*r;

	TAILQ_FOREACH(r, &el->resvs, entry) {
		if (r->req == req) {
			resv_let_go(el, r);
			return;
		}
	}
}

/* The store's cancel: the table no longer waits, so the key goes. */
static void
etcd_lock_cancel(void *state)
{
	struct etcd_lock	*el = state_lock(state);

	if (el->phase != EL_OWNED)
		el_let_go(el);
}

/* The store's current: an idle state has no key, so it always is. */
static int
etcd_lock_current(void *state)
{
	(void)state;
	return 1;
}

/*
 * The store's refresh, before a lock nobody holds is granted anew: a key
 * etcd granted and not yet taken is fit; one taken before goes, so that
 * the next local waiter queues in etcd behind the other nodes' takes.
 */
static int
etcd_lock_refresh(void *state)
{
	struct etcd_lock	*el = state_lock(state);

	if (el->phase != EL_OWNED || el->fresh)
		return 0;
	el_let_go(el);
	return -EAGAIN;
}

/* The store's explain: the sentences for its own errors. */
static int
etcd_lock_explain(struct lock_store *base, const char *name, int error,
    char *buf, size_t size)
{
	struct store_etcd	*st = (struct store_etcd *)base;

	(void)name;
	switch (error) {
	case -EHOSTUNREACH:
		return snprintf(buf, size, "etcd is not reachable: no "
		    "endpoint of --etcd answered");
	case -ENOLINK:
		return snprintf(buf, size, "the daemon lost its etcd lease "
		    "(no keepalive succeeded within --etcd-ttl %d s)", st->ttl);
	case -EUSERS:
		return snprintf(buf, size, "too many cluster locks held or "
		    "awaited on this daemon (--etcd-max-waits %zu)",
		    st->max_waits);
	}
	return 0;
}

static const struct lock_store_ops etcd_store_ops = {
	.lock_size = sizeof(struct etcd_lock *),
	.open = etcd_lock_open,
	.close = etcd_lock_close,
	.take = etcd_lock_take,
	.join = etcd_lock_join,
	.drop = etcd_lock_drop,
	.wait = etcd_lock_wait,
	.cancel = etcd_lock_cancel,
	.current = etcd_lock_current,
	.refresh = etcd_lock_refresh,
	.queued = etcd_lock_queued,
	.left = etcd_lock_left,
	.explain = etcd_lock_explain,
};

/*
 * A store on the etcd cluster of conf's endpoints; NULL with a sentence
 * in err if the configuration is bad.  Nothing is sent until a take.
 */
struct store_etcd *
store_etcd_new(struct event_base *base, const struct etcd_config *conf,
    char *err, size_t err_size)
{
	struct store_etcd	*st;
	struct timeval		 tv;

	if ((st = calloc(1, sizeof *st)) == NULL)
		fatal("calloc");
	st->base.ops = &etcd_store_ops;
	st->base.next_token = 1;
	st->base.token_limit = INT64_MAX;
	st->evbase = base;
	st->ttl = conf->ttl;
	st->max_waits = conf->max_waits;
	TAILQ_INIT(&st->locks);
	TAILQ_INIT(&st->calls);
	if (endpoints_parse(st, conf->endpoints) == -1) {
		snprintf(err, err_size, "--etcd takes http://HOST:PORT URLs, "
		    "comma-separated, at most %d", ETCD_ENDPOINTS_MAX);
		free(st);
		return NULL;
	}
	snprintf(st->prefix, sizeof st->prefix, "%s", conf->prefix);
	snprintf(st->node, sizeof st->node, "%s", conf->node);
	st->keepalive_ev = event_new(base, -1, EV_PERSIST, keepalive_tick_cb,
	    st);
	st->deadline_ev = evtimer_new(base, lease_deadline_cb, st);
	if (st->keepalive_ev == NULL || st->deadline_ev == NULL)
		fatal("event_new");
	tv.tv_sec = st->ttl / 3;
	tv.tv_usec = (suseconds_t)(st->ttl % 3) * 1000000 / 3;
	evtimer_add(st->keepalive_ev, &tv);
	return st;
}

/*
 * POST body to path on one endpoint and wait for the status line, with a
 * plain blocking socket: for the revoke at a stop or reload, when the
 * event loop cannot run (a signal's callback, or after the loop).
 * Returns 0 on a 200.
 */
static int
endpoint_post_now(const struct etcd_endpoint *ep, const char *path,
    const char *body)
{
	struct addrinfo	 hints = { .ai_socktype = SOCK_STREAM }, *ai;
	struct timeval	 tv = { 1, 0 };
	char		 port[8], req[1024], reply[64];
	int		 fd, n, ok = -1;

	snprintf(port, sizeof port, "%d", ep->port);
	if (getaddrinfo(ep->host, port, &hints, &ai) != 0)
		return -1;
	n = snprintf(req, sizeof req, "POST %s HTTP/1.1\r\nHost: %s\r\n"
	    "Content-Type: application/json\r\nContent-Length: %zu\r\n"
	    "Connection: close\r\n\r\n%s", path, ep->host, strlen(body),
	    body);
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd != -1 && n > 0 && (size_t)n < sizeof req &&
	    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0 &&
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) == 0 &&
	    connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
	    write(fd, req, (size_t)n) == n &&
	    (n = (int)read(fd, reply, sizeof reply - 1)) > 0) {
		reply[n] = '\0';
		ok = strncmp(reply, "HTTP/1.1 200", 12) == 0 ? 0 : -1;
	}
	if (fd != -1)
		close(fd);
	freeaddrinfo(ai);
	return ok;
}

/*
 * At a clean stop or a reload: revoke the lease, so that its keys go now
 * and not a TTL later.  Tries each endpoint once, a second at most each.
 */
void
store_etcd_shutdown(struct store_etcd *st)
{
	char	 body[64];
	size_t	 i;

	if (st == NULL || st->lease == 0)
		return;
	snprintf(body, sizeof body, "{\"ID\":\"%" PRId64 "\"}", st->lease);
	for (i = 0; i < st->nendpoints; i++) {
		if (endpoint_post_now(&st->endpoints[(st->current + i) %
		    st->nendpoints], "/v3/lease/revoke", body) == 0)
			break;
	}
	/* Its keys are gone: none of them is deleted again. */
	st->lease = 0;
}

/* Free the store after its table: drop every call and connection. */
void
store_etcd_free(struct store_etcd *st)
{
	struct etcd_call	*call;
	struct etcd_lock	*el;
	size_t			 i, j;

	if (st == NULL)
		return;
	st->closing = 1;
	for (i = 0; i < st->nendpoints; i++) {
		for (j = 0; j < ETCD_POOL; j++) {
			if (st->endpoints[i].pool[j] != NULL)
				evhttp_connection_free(
				    st->endpoints[i].pool[j]);
		}
		if (st->endpoints[i].keepalive != NULL)
			evhttp_connection_free(st->endpoints[i].keepalive);
	}
	/* Each caller frees what it gave its call, as on a failed request. */
	while ((call = TAILQ_FIRST(&st->calls)) != NULL) {
		if (call->fn != NULL)
			call->fn(st, NULL, call->arg, call->gen);
		call_free(call);
	}
	while ((el = TAILQ_FIRST(&st->locks)) != NULL) {
		el->refs = 1;
		el_unref(el);
	}
	event_free(st->keepalive_ev);
	event_free(st->deadline_ev);
	free(st);
}

/* The store as the lock table sees it. */
struct lock_store *
store_etcd_base(struct store_etcd *st)
{
	return &st->base;
}

/* Set the calls up into the daemon. */
void
store_etcd_set_hooks(struct store_etcd *st,
    const struct store_etcd_hooks *hooks)
{
	st->hooks = *hooks;
}

/* This daemon's node name, as other nodes see it. */
const char *
store_etcd_node(const struct store_etcd *st)
{
	return st->node;
}

/* Whether etcd answered the lock's take yet: it holds or it waits. */
int
store_etcd_settled(struct lock *lock)
{
	struct etcd_lock	*el = state_lock(lock_store_state(lock));

	return el->phase == EL_WAITING || el->phase == EL_OWNED;
}

/* The holders at the head of a waiting cluster lock, as last read. */
struct json_object *
store_etcd_holders(struct lock *lock)
{
	struct etcd_lock	*el = state_lock(lock_store_state(lock));

	if (el->holders == NULL)
		return json_object_new_array();
	return json_object_get(el->holders);
}

/* Split one name's keys (in create order) into its holders and waiters. */
static struct json_object *
list_lock_new(const char *name, struct json_object *keys)
{
	struct json_object	*lock, *holders, *waiters, *key, *mode;
	struct etcd_kv		 kv;
	struct etcd_queue	 q;
	size_t			 i;

	lock = json_object_new_object();
	obj_with(lock, "name", json_object_new_string(name));
	obj_with(lock, "scope", json_object_new_string("cluster"));
	holders = json_object_new_array();
	waiters = json_object_new_array();
	etcd_queue_init(&q, 0, PROTO_EXCLUSIVE);
	for (i = 0; i < json_object_array_length(keys); i++) {
		key = json_object_array_get_idx(keys, i);
		json_object_object_get_ex(key, "mode", &mode);
		kv.mode = strcmp(json_object_get_string(mode), "shared") == 0 ?
		    PROTO_SHARED : PROTO_EXCLUSIVE;
		etcd_queue_add(&q, &kv);
		json_object_array_add(q.nhead == q.nkeys ? holders : waiters,
		    json_object_get(key));
	}
	obj_with(lock, "holders", holders);
	return obj_with(lock, "waiters", waiters);
}

static int
list_name_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* list's locks from a map of name to its keys, sorted by name. */
static struct json_object *
list_from_names(struct json_object *names)
{
	struct json_object	*locks = json_object_new_array(), *keys;
	const char		**sorted;
	size_t			 n = 0, i;

	if ((sorted = calloc((size_t)json_object_object_length(names) + 1,
	    sizeof *sorted)) == NULL)
		return locks;
	json_object_object_foreach(names, name, value) {
		(void)value;
		sorted[n++] = name;
	}
	qsort(sorted, n, sizeof *sorted, list_name_cmp);
	for (i = 0; i < n && i < PROTO_MAX_LIST; i++) {
		json_object_object_get_ex(names, sorted[i], &keys);
		json_object_array_add(locks, list_lock_new(sorted[i], keys));
	}
	free(sorted);
	return locks;
}

/* Turn a range of queues (in create order) into list's locks. */
static struct json_object *
list_from_range(struct store_etcd *st, struct json_object *range)
{
	struct json_object	*kvs, *names, *keys, *locks;
	struct etcd_kv		*kv;
	char			 name[PROTO_MAX_NAME + 1];
	enum proto_mode		 mode;
	size_t			 i, n;

	if (!json_object_object_get_ex(range, "kvs", &kvs) ||
	    !json_object_is_type(kvs, json_type_array) ||
	    (kv = malloc(sizeof *kv)) == NULL)
		return json_object_new_array();
	names = json_object_new_object();
	n = json_object_array_length(kvs);
	for (i = 0; i < n; i++) {
		if (etcd_kv_decode(json_object_array_get_idx(kvs, i),
		    kv) != 0 || etcd_key_parse(kv->key, st->prefix, name,
		    sizeof name, &mode) != 0)
			continue;
		if (!json_object_object_get_ex(names, name, &keys)) {
			keys = json_object_new_array();
			json_object_object_add(names, name, keys);
		}
		json_object_array_add(keys, holder_from_kv(kv));
	}
	free(kv);
	locks = list_from_names(names);
	json_object_put(names);
	return locks;
}

/* The answer to a list's range. */
static void
list_range_cb(struct store_etcd *st, struct json_object *reply, void *arg,
    uint64_t gen)
{
	struct etcd_list_req	*lr = arg;

	(void)gen;
	if (!lr->cancelled)
		lr->cb(reply != NULL ? list_from_range(st, reply) : NULL,
		    lr->arg);
	free(lr);
}

/*
 * Read every cluster lock (or name's alone) from etcd; cb gets the
 * locks, or NULL when etcd cannot be read.  Returns a handle to cancel.
 */
struct etcd_list_req *
store_etcd_list(struct store_etcd *st, const char *name,
    store_etcd_list_cb cb, void *arg)
{
	struct etcd_list_req	*lr;
	char			 prefix[ETCD_KEY_MAX];

	if ((lr = calloc(1, sizeof *lr)) == NULL)
		return NULL;
	lr->cb = cb;
	lr->arg = arg;
	if (name != NULL)
		lock_prefix(st, name, prefix, sizeof prefix);
	else
		snprintf(prefix, sizeof prefix, "%s", st->prefix);
	/* In create order: list_from_range groups them by name. */
	etcd_post(st, 0, "/v3/kv/range", range_request(prefix), list_range_cb,
	    lr, 0);
	return lr;
}

/* Cancel a list: its callback is not called. */
void
store_etcd_list_cancel(struct etcd_list_req *lr)
{
	if (lr != NULL)
		lr->cancelled = 1;
}
