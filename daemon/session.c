/*
 * One client's session: it owns its conn, parses each line the conn hands
 * it, dispatches the request, and keeps the client's label and acquires
 * (their waits, timers, grants and releases).  The grant rules themselves
 * live in locktab.c; this file turns them into protocol messages.  What
 * sessions share, and the calls up into the daemon, come in the
 * session_host server.c made.
 */

#include <sys/file.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"

struct acquire;
TAILQ_HEAD(acquire_list, acquire);

/* The descriptors that came with one request line. */
struct descriptors {
	int			 fd[PROTO_MAX_FDS];
	size_t			 n;		/* may exceed PROTO_MAX_FDS */
};

struct session {
	TAILQ_ENTRY(session)	 entry;
	struct session_host	*host;
	struct conn		*conn;
	struct client_info	 client;
	struct acquire_list	 acquires;
	struct acquire		*acquiring;	/* in locktab_acquire; NULL
						   once handed off there */
	struct lock_owner	*owner;		/* its node in the local
						   table's wait-for graph */
	struct etcd_list_req	*listing;	/* a cluster list in flight */
	struct json_object	*list_id;	/* its id */
	int			 uid_counted;	/* for host->closed */
	uint32_t		 snap_index;	/* in the state being saved */
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
	struct deadlock_group	*group;		/* its node, if it named one */
	char			*convert_id;	/* a waiting convert's id, as
						   JSON text; NULL: none */
	size_t			 convert_id_len;
	struct event		*convert_ev;	/* its timeout */
	double			 started;	/* monotonic */
	double			 timeout_at;	/* monotonic; 0: none */
	double			 notify_at;	/* monotonic; 0: none, or sent */
	double			 granted_at;	/* monotonic; 0: not held here */
	uint32_t		 snap_index;	/* in the state being saved */
	int			 held;
	int			 cluster;	/* in the etcd store's table */
	int			 try_only;	/* timeout 0 */
	double			 notify_after;	/* cluster: once queued */
	int			 handoff_fd;	/* descriptor form: the
						   caller's, else -1 */
	int			 by_path;	/* asked for the file below */
	dev_t			 path_dev;
	ino_t			 path_ino;
	const char		*target;	/* the name or path asked */
	char			 text[];	/* owner, id_text, target */
};

/* The lock table's arg is the holder, so it must be the first member. */
_Static_assert(offsetof(struct acquire, holder) == 0,
    "struct acquire must start with its holder_info");

static void	acquire_arm_notify(struct acquire *);
static void	convert_lost(struct acquire *, int64_t);

/* A lost upgrade's answer, to a waiting convert or one just asked. */
static const char convert_lost_msg[] = "the upgrade lost the lock: an "
    "outside flock got in while the kernel converted it; the lock is no "
    "longer held";
static int	acquire_arm(struct acquire *, struct event **,
		    event_callback_fn, double);

static size_t
acquire_count(struct session *s)
{
	struct acquire	*a;
	size_t		 n = 0;

	TAILQ_FOREACH(a, &s->acquires, entry)
		n++;
	return n;
}

/* Find the session's acquire of the lock named key in a scope. */
static struct acquire *
acquire_find(struct session *s, const char *key, int cluster)
{
	struct acquire	*a;

	TAILQ_FOREACH(a, &s->acquires, entry) {
		if (a->req != NULL && a->cluster == cluster &&
		    strcmp(lock_req_name(a->req), key) == 0)
			return a;
	}
	return NULL;
}

/* Find the session's acquire asked for as target in a scope. */
static struct acquire *
acquire_find_target(struct session *s, const char *target, int cluster)
{
	struct acquire	*a;

	TAILQ_FOREACH(a, &s->acquires, entry) {
		if (a->req != NULL && a->cluster == cluster &&
		    strcmp(a->target, target) == 0)
			return a;
	}
	return NULL;
}

/* The lock table an acquire is in: the local one, or the cluster's. */
static struct locktab *
acquire_table(const struct acquire *a)
{
	struct session_host	*host = a->session->host;

	return a->cluster ? host->cluster : host->locktab;
}

/* The metrics of the acquire's scope. */
static struct metrics_scope *
acquire_metrics(const struct acquire *a)
{
	return &a->session->host->metrics.scope[a->cluster];
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

/* Forget the acquire's waiting convert, answered or dropped. */
static void
acquire_convert_forget(struct acquire *a)
{
	if (a->convert_ev != NULL) {
		event_free(a->convert_ev);
		a->convert_ev = NULL;
	}
	free(a->convert_id);
	a->convert_id = NULL;
}

/*
 * The acquires of one process that named one deadlock_group, whichever
 * connections they came on: one node of the wait-for graph, for clients
 * (as Python's, a connection per lock) whose thread holds locks on
 * several connections.  It lives while an acquire of it does.
 */
struct deadlock_group {
	TAILQ_ENTRY(deadlock_group) entry;
	struct peer		 peer;		/* the process, for messages */
	struct lock_owner	*owner;
	size_t			 refs;		/* acquires in it */
	char			 name[];
};

/* The group name of peer's process, made if new; NULL if out of memory. */
static struct deadlock_group *
group_get(struct session_host *host, const struct peer *peer,
    const char *name)
{
	struct deadlock_group	*g;
	size_t			 len = strlen(name) + 1;

	TAILQ_FOREACH(g, &host->groups, entry) {
		if (g->peer.pid == peer->pid && strcmp(g->name, name) == 0) {
			g->refs++;
			return g;
		}
	}
	if ((g = calloc(1, sizeof *g + len)) == NULL)
		return NULL;
	g->peer = *peer;
	if ((g->owner = locktab_owner_new(&g->peer)) == NULL) {
		free(g);
		return NULL;
	}
	memcpy(g->name, name, len);
	g->refs = 1;
	TAILQ_INSERT_TAIL(&host->groups, g, entry);
	return g;
}

/* An acquire of the group is gone; the last one frees it. */
static void
group_put(struct session_host *host, struct deadlock_group *g)
{
	if (g == NULL || --g->refs > 0)
		return;
	TAILQ_REMOVE(&host->groups, g, entry);
	locktab_owner_free(g->owner);
	free(g);
}

/* Unlink and free an acquire whose lock_req is already gone. */
static void
acquire_free(struct acquire *a)
{
	TAILQ_REMOVE(&a->session->acquires, a, entry);
	acquire_stop_timers(a);
	acquire_convert_forget(a);
	if (a->handoff_fd >= 0)
		close(a->handoff_fd);
	group_put(a->session->host, a->group);
	free(a);
}

/* Release or cancel the acquire in the lock table, then free it. */
static void
acquire_drop(struct acquire *a)
{
	struct session_host	*host = a->session->host;
	struct locktab		*tab = acquire_table(a);
	struct lock_req		*req = a->req;
	struct deadlock_group	*group;

	if (a->granted_at > 0)
		metrics_observe(&acquire_metrics(a)->hold,
		    clock_monotonic() - a->granted_at);
	/* Unlink first: releasing may grant others, never this acquire. */
	a->req = NULL;
	group = a->group;
	a->group = NULL;
	acquire_free(a);
	locktab_release(tab, req);
	/* After: the request's owner may be the group's. */
	group_put(host, group);
}

/* Send an error reply echoing id, which it takes. */
static void
reply_error_id(struct conn *conn, struct json_object *id,
    enum proto_error error, const char *msg)
{
	conn_note_error(conn, error);
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

/* A cluster request's holder as list and blocking show it, but the node. */
static void
holder_fill(struct proto_holder *h, struct lock_req *req)
{
	const struct holder_info	*info = lock_req_arg(req);

	memset(h, 0, sizeof *h);
	h->pid = info->client->peer.pid;
	h->uid = info->client->peer.uid;
	h->gid = info->client->peer.gid;
	h->client = info->client->label;
	h->owner = info->owner;
	h->mode = lock_req_mode(req);
	h->since = lock_req_since(req);
	h->token = lock_req_token(req);
}

/*
 * The holders a cluster lock's blocking notice names: this node's own
 * when it holds the lock, else the other nodes' that etcd showed.
 */
static struct json_object *
cluster_holders(struct session_host *host, struct lock *lock)
{
	struct json_object		*holders;
	struct lock_req			*req;
	struct proto_holder		 h;

	if ((req = lock_first_holder(lock)) == NULL)
		return store_etcd_holders(lock);
	holders = json_object_new_array();
	for (; req != NULL; req = lock_req_next(req)) {
		holder_fill(&h, req);
		h.node = store_etcd_node(host->etcd);
		json_object_array_add(holders, proto_holder_encode(&h));
	}
	return holders;
}

/* A new event of kind about an acquire: its id, and its name as asked. */
static struct json_object *
acquire_event_new(const struct acquire *a, const char *kind)
{
	struct json_object	*event, *id;

	id = proto_id_parse(a->id_text, a->id_len);
	event = proto_event_new(id, kind);
	json_object_put(id);
	json_object_object_add(event, "name",
	    json_object_new_string(a->target));
	return event;
}

/* Send the one blocking event of a waiting acquire. */
static void
acquire_notify_cb(evutil_socket_t fd, short events, void *arg)
{
	struct acquire		*a = arg;
	struct json_object	*event;

	(void)fd;
	(void)events;
	a->notify_at = 0;
	event = acquire_event_new(a, "blocking");
	json_object_object_add(event, "holders", a->cluster ?
	    cluster_holders(a->session->host, lock_req_lock(a->req)) :
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
	acquire_metrics(a)->timeouts++;
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

/* A path lock's grant: its path may need escaping, so json-c writes it. */
static void
grant_reply_path(struct acquire *a, struct lock_req *req, uint64_t waited_us)
{
	struct json_object	*id, *reply;

	id = proto_id_parse(a->id_text, a->id_len);
	reply = proto_reply_new(id, 1);
	json_object_put(id);
	json_object_object_add(reply, "name",
	    json_object_new_string(a->target));
	json_object_object_add(reply, "mode",
	    json_object_new_string(proto_mode_name(lock_req_mode(req))));
	json_object_object_add(reply, "token",
	    json_object_new_int64(lock_req_token(req)));
	json_object_object_add(reply, "waited",
	    json_object_new_double(waited_us / 1e6));
	conn_send(a->conn, reply);
}

/* Send a grant reply, formatted by hand: printf was a sixth of its cost. */
static void
grant_reply(struct acquire *a, struct lock_req *req, uint64_t waited_us)
{
	char	 line[PROTO_REPLY_MAX];
	size_t	 len;

	/* A path the fast line cannot carry as it is goes through json-c. */
	if (proto_is_path(a->target) && !proto_name_plain(a->target)) {
		grant_reply_path(a, req, waited_us);
		return;
	}
	len = proto_format_grant(line, sizeof line, a->id_text, a->id_len,
	    a->target, lock_req_mode(req), (uint64_t)lock_req_token(req),
	    waited_us);
	reply_write(a->conn, line, len, a->id_text, a->id_len);
}

/*
 * The descriptor form's grant: move the flock onto the caller's own open
 * file description, note who holds it there for list, and let go: the
 * lock now lasts as long as that description, like any flock(2) on it.
 */
/* The parent of process pid, from /proc (0 if it cannot be read). */
static pid_t
proc_parent(pid_t pid)
{
	char		 path[64], buf[512], *close_paren;
	long		 ppid = 0;

	snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
	if (proc_read(path, buf, sizeof buf) <= 0)
		return 0;
	/* The command may hold any bytes, so parse after its last ')'. */
	if ((close_paren = strrchr(buf, ')')) == NULL ||
	    sscanf(close_paren + 1, " %*c %ld", &ppid) != 1)
		return 0;
	return (pid_t)ppid;
}

/* The holder of a handed-over lock: the client, as of now. */
static void
handoff_holder(struct handoff_info *h, const struct client_info *client,
    const char *owner, enum proto_mode mode, int64_t token)
{
	h->holder.pid = client->peer.pid;
	h->holder.uid = client->peer.uid;
	h->holder.gid = client->peer.gid;
	h->holder.client = client->label;
	h->holder.owner = owner;
	h->holder.mode = mode;
	h->holder.since = clock_realtime();
	h->holder.token = token;
	h->parent = proc_parent(client->peer.pid);
}

/* What list keeps of a lock handed over to the acquire's client. */
static void
handoff_describe(const struct acquire *a, struct lock_req *req,
    struct handoff_info *h, char *name, size_t name_size)
{
	const struct client_info	*client = a->holder.client;
	struct lock			*lock = lock_req_lock(req);

	memset(h, 0, sizeof *h);
	lock_file_path(lock, name, name_size);
	h->key = lock_req_name(req);
	h->name = name;
	lock_file_id(lock, &h->dev, &h->ino);
	handoff_holder(h, client, a->holder.owner, lock_req_mode(req),
	    lock_req_token(req));
	h->holder.since = lock_req_since(req);
}

static void
acquire_hand_off(struct acquire *a, struct lock_req *req, uint64_t waited_us)
{
	struct handoff_info	 h;
	char			 name[PATH_MAX];
	int			 rc;

	rc = store_file_handoff(lock_req_lock(req), a->handoff_fd,
	    lock_req_mode(req));
	close(a->handoff_fd);
	a->handoff_fd = -1;
	if (a->session->acquiring == a)
		a->session->acquiring = NULL;
	if (rc != 0) {
		acquire_error(a, PROTO_E_TIMEOUT, rc == -EWOULDBLOCK ?
		    "a process outside the broker took the file while the "
		    "lock moved onto the descriptor" : strerror(-rc));
	} else {
		handoff_describe(a, req, &h, name, sizeof name);
		listing_handoff_add(a->session->host->listing, &h);
		grant_reply(a, req, waited_us);
	}
	a->granted_at = 0;	/* held on the caller's descriptor now */
	acquire_drop(a);
}

/*
 * Whether a path's grant is on the file the client opened: a path may
 * lead to a name lock whose file is replaced before the grant, which
 * then moves to the new file.  If so, say so and let go.
 */
static int
acquire_same_file(struct acquire *a, struct lock_req *req)
{
	dev_t	 dev;
	ino_t	 ino;

	lock_file_id(lock_req_lock(req), &dev, &ino);
	if (dev == a->path_dev && ino == a->path_ino)
		return 1;
	if (a->session->acquiring == a)
		a->session->acquiring = NULL;
	acquire_error(a, PROTO_E_INTERNAL, "the lock file this path leads "
	    "to was replaced in the lock dir while the request waited; ask "
	    "again");
	acquire_drop(a);
	return 0;
}

/*
 * The lock table granted an acquire: reply with its token.  The reply is
 * formatted directly, as names never need escaping.
 */
void
session_granted(struct lock_req *req, void *arg)
{
	struct acquire		*a = arg;
	struct metrics_scope	*m = acquire_metrics(a);
	double			 waited;

	a->req = req;
	a->held = 1;
	acquire_stop_timers(a);
	if (a->by_path && !acquire_same_file(a, req))
		return;
	a->granted_at = clock_monotonic();
	waited = a->granted_at - a->started;
	if (!(waited >= 0 && waited < PROTO_MAX_SECONDS * 10))
		waited = 0;
	m->grants[lock_req_mode(req)]++;
	metrics_observe(&m->wait, waited);
	if (a->handoff_fd >= 0) {
		acquire_hand_off(a, req, (uint64_t)(waited * 1e6 + 0.5));
		return;
	}
	grant_reply(a, req, (uint64_t)(waited * 1e6 + 0.5));
}

/*
 * The cycle the lock table found, for the deadlock error's message: each
 * connection by its pid and the lock it waits for there, the failed
 * request's first.
 */
static void
deadlock_message(struct locktab *tab, char *msg, size_t size)
{
	const struct locktab_cycle_step	*steps;
	const struct peer		*peer;
	size_t				 n, i, kept, len;

	n = locktab_cycle(tab, &steps);
	kept = n < LOCKTAB_CYCLE_MAX ? n : LOCKTAB_CYCLE_MAX;
	len = (size_t)snprintf(msg, size, "waiting would deadlock: this "
	    "wait closes a cycle of %zu connections waiting for each "
	    "other, and is the youngest in it that asked detect_deadlock:",
	    n);
	for (i = 0; i < kept && len < size; i++) {
		peer = steps[i].owner;
		len += (size_t)snprintf(msg + len, size - len, "%s pid %ld "
		    "waits for %s", i == 0 ? "" : ",", (long)peer->pid,
		    steps[i].name);
	}
	if (len < size && kept < n)
		len += (size_t)snprintf(msg + len, size - len, ", and %zu "
		    "more", n - kept);
	if (len < size && n > 0)
		snprintf(msg + len, size - len, ", held or queued ahead by pid "
		    "%ld; the locks held stay held",
		    (long)((const struct peer *)steps[0].owner)->pid);
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
	enum proto_error code = PROTO_E_INTERNAL;

	a->req = NULL;
	if (error == LOCKTAB_E_LOST) {
		convert_lost(a, lock_req_token(req));
		acquire_free(a);
		return;
	}
	if (error == LOCKTAB_E_CYCLE) {
		deadlock_message(acquire_table(a), msg, sizeof msg);
		acquire_error(a, PROTO_E_DEADLOCK, msg);
		acquire_free(a);
		return;
	}
	if (locktab_explain(acquire_table(a), lock_req_name(req), error, msg,
	    sizeof msg) <= 0)
		snprintf(msg, sizeof msg, "cannot take the lock: %s",
		    strerror(-error));
	/* The etcd store's: etcd out of reach or the lease lost, a bound. */
	if (a->cluster && (error == -EHOSTUNREACH || error == -ENOLINK))
		code = PROTO_E_UNAVAILABLE;
	else if (a->cluster && error == -EUSERS)
		code = PROTO_E_LIMIT;
	acquire_error(a, code, msg);
	acquire_free(a);
}

/*
 * An upgrade lost the lock: an outside flock got in while the kernel
 * converted it.  The holder gets a lost event, and its convert an error.
 */
static void
convert_lost(struct acquire *a, int64_t token)
{
	struct json_object	*event;

	event = acquire_event_new(a, "lost");
	json_object_object_add(event, "scope", json_object_new_string("local"));
	json_object_object_add(event, "token", json_object_new_int64(token));
	conn_send(a->conn, event);
	if (a->convert_id != NULL)
		reply_error_id(a->conn, proto_id_parse(a->convert_id,
		    a->convert_id_len), PROTO_E_CANCELLED, convert_lost_msg);
	acquire_convert_forget(a);
}

/* A conversion's success reply: the lock's name, new mode and token. */
static void
convert_reply(struct acquire *a, const char *id_text, size_t id_len)
{
	struct json_object	*id, *reply;

	id = proto_id_parse(id_text, id_len);
	reply = proto_reply_new(id, 1);
	json_object_put(id);
	json_object_object_add(reply, "name",
	    json_object_new_string(a->target));
	json_object_object_add(reply, "mode",
	    json_object_new_string(proto_mode_name(lock_req_mode(a->req))));
	json_object_object_add(reply, "token",
	    json_object_new_int64(lock_req_token(a->req)));
	conn_send(a->conn, reply);
}

/* The lock table's converted callback: a waiting upgrade holds now. */
void
session_converted(struct lock_req *req, int error, void *arg)
{
	struct acquire	*a = arg;

	(void)req;
	if (a->convert_id == NULL)
		return;
	if (error == 0)
		convert_reply(a, a->convert_id, a->convert_id_len);
	else
		reply_error_id(a->conn, proto_id_parse(a->convert_id,
		    a->convert_id_len), PROTO_E_INTERNAL,
		    a->session->host->tokens_exhausted(a->session->host->arg));
	acquire_convert_forget(a);
}

/* A waiting upgrade's timeout: it gives up, and the shared hold stays. */
static void
convert_timeout_cb(evutil_socket_t fd, short events, void *arg)
{
	struct acquire	*a = arg;

	(void)fd;
	(void)events;
	reply_error_id(a->conn, proto_id_parse(a->convert_id,
	    a->convert_id_len), PROTO_E_TIMEOUT, "timed out waiting to "
	    "convert the lock to exclusive; it is still held shared");
	acquire_convert_forget(a);
	locktab_convert_cancel(acquire_table(a), a->req);
}

/*
 * End a waiting convert with an error, its upgrade given up and the hold
 * kept as it was: before a reload, which cannot carry it along.
 */
static void
convert_abandon(struct acquire *a, enum proto_error code, const char *msg)
{
	if (a->convert_id == NULL)
		return;
	reply_error_id(a->conn, proto_id_parse(a->convert_id,
	    a->convert_id_len), code, msg);
	acquire_convert_forget(a);
	locktab_convert_cancel(acquire_table(a), a->req);
}

/*
 * The lock table's contended report: a holder that asked is told how many
 * wait behind it and who is first, in the waiter shape list uses.
 */
void
session_contended(struct lock_req *holder, size_t nwaiters,
    struct lock_req *first, void *arg)
{
	struct acquire		*a = arg;
	struct json_object	*event;

	(void)holder;
	event = acquire_event_new(a, "contended");
	json_object_object_add(event, "waiters",
	    json_object_new_int64((int64_t)nwaiters));
	json_object_object_add(event, "first", listing_request(first));
	conn_send(a->conn, event);
}

/*
 * The etcd store's describe hook: the holder a new key stands for, a
 * waiting request (pid, uid, client, owner, since), for other nodes.
 */
struct json_object *
session_cluster_describe(struct lock_req *req, void *arg)
{
	struct proto_holder	 h;

	(void)arg;
	if (req == NULL)
		return NULL;
	holder_fill(&h, req);
	h.since = clock_realtime();
	return proto_holder_encode(&h);
}

/* The etcd store's queued hook: a take is ahead, so timeout 0 gives up. */
void
session_cluster_queued(struct lock *lock, void *arg)
{
	struct lock_req	*req, *next;
	struct acquire	*a;

	(void)arg;
	for (req = lock_first_waiter(lock); req != NULL; req = next) {
		next = lock_req_next(req);
		a = lock_req_arg(req);
		if (a->try_only) {
			acquire_metrics(a)->timeouts++;
			acquire_error(a, PROTO_E_TIMEOUT,
			    "the cluster lock is held");
			acquire_drop(a);
		} else if (a->notify_ev == NULL && a->notify_after <
		    PROTO_MAX_SECONDS && (a->timeout_ev == NULL ||
		    a->started + a->notify_after < a->timeout_at))
			acquire_arm_notify(a);
	}
}

/*
 * The etcd store's lost hook: the lease went, so the lock's holders no
 * longer hold it.  Each gets a lost event and its acquire goes.
 */
void
session_cluster_lost(struct lock *lock, void *arg)
{
	struct json_object	*event;
	struct lock_req		*req;
	struct acquire		*a;

	(void)arg;
	/* Each is told first: dropping the last holder may close the lock. */
	for (req = lock_first_holder(lock); req != NULL;
	    req = lock_req_next(req)) {
		a = lock_req_arg(req);
		event = acquire_event_new(a, "lost");
		json_object_object_add(event, "scope",
		    json_object_new_string("cluster"));
		json_object_object_add(event, "token",
		    json_object_new_int64(lock_req_token(req)));
		conn_send(a->conn, event);
	}
	while ((req = lock_first_holder(lock)) != NULL) {
		a = lock_req_arg(req);
		if (lock_req_next(req) == NULL) {
			acquire_drop(a);	/* the lock may go with it */
			break;
		}
		acquire_drop(a);
	}
}

/* Arm a cluster acquire's blocking notice once etcd says it waits. */
static void
acquire_arm_notify(struct acquire *a)
{
	double	 left = a->started + a->notify_after - clock_monotonic();

	a->notify_at = a->started + a->notify_after;
	if (acquire_arm(a, &a->notify_ev, acquire_notify_cb, left) == -1)
		log_warnx("out of memory arming a blocking notice");
}

/*
 * Before a reload or restart: cluster locks cannot be handed over (they
 * live on this process's lease), so holders get lost and waiters
 * unavailable, and every cluster acquire goes.
 */
void
session_cluster_drop_all(struct session_host *host)
{
	struct session	*s;
	struct acquire	*a, *next;
	struct lock	*lock;

	TAILQ_FOREACH(s, &host->sessions, entry) {
		for (a = TAILQ_FIRST(&s->acquires); a != NULL; a = next) {
			next = TAILQ_NEXT(a, entry);
			if (!a->cluster || a->req == NULL)
				continue;
			if (a->held) {
				/* Takes every holder, maybe next too. */
				lock = lock_req_lock(a->req);
				session_cluster_lost(lock, host);
				next = TAILQ_FIRST(&s->acquires);
				continue;
			}
			acquire_error(a, PROTO_E_UNAVAILABLE, "locksd is "
			    "reloading: a cluster lock cannot be handed over; "
			    "ask again");
			acquire_drop(a);
		}
	}
}

static struct timeval
seconds_to_tv(double seconds)
{
	struct timeval	 tv;

	tv.tv_sec = (time_t)seconds;
	tv.tv_usec = (suseconds_t)((seconds - floor(seconds)) * 1e6);
	return tv;
}

/* Arm one timer of an acquire to fire in seconds; -1 if out of memory. */
static int
acquire_arm(struct acquire *a, struct event **evp,
    event_callback_fn cb, double seconds)
{
	struct timeval	 tv;

	*evp = evtimer_new(a->session->host->base, cb, a);
	tv = seconds_to_tv(seconds > 0 ? seconds : 0);
	return *evp == NULL || evtimer_add(*evp, &tv) ? -1 : 0;
}

/* Arm the timeout and blocking-notice timers of a queued acquire. */
static int
acquire_arm_timers(struct acquire *a, const struct proto_request *r)
{
	double	 now = clock_monotonic();

	if (r->timeout > 0) {
		a->timeout_at = now + r->timeout;
		if (acquire_arm(a, &a->timeout_ev, acquire_timeout_cb,
		    r->timeout) == -1)
			return -1;
	}
	/* The maximum, 1e9 s, is how a client says "never tell me". */
	if ((r->timeout < 0 || r->notify_after < r->timeout) &&
	    r->notify_after < PROTO_MAX_SECONDS && (!a->cluster ||
	    store_etcd_settled(lock_req_lock(a->req)))) {
		a->notify_at = now + r->notify_after;
		if (acquire_arm(a, &a->notify_ev, acquire_notify_cb,
		    r->notify_after) == -1)
			return -1;
	}
	return 0;
}

/* Close the descriptors of a request that no lock took. */
static void
descriptors_close(struct descriptors *fds)
{
	size_t	 i;

	for (i = 0; i < fds->n && i < PROTO_MAX_FDS; i++) {
		if (fds->fd[i] >= 0)
			close(fds->fd[i]);
	}
	fds->n = 0;
}

/*
 * The lock name of a path request from the descriptors sent with it
 * (want of them: the caller's own, then the broker's copy, for a
 * handoff; else the file's one), or -1 after an error reply.
 */
static int
path_resolve(struct session *s, const struct proto_request *r,
    struct descriptors *fds, size_t want, char *key, size_t key_size)
{
	char	 msg[512];
	int	 rc;

	if (fds->n != want) {
		snprintf(msg, sizeof msg, "a request for a path carries %s of "
		    "the file (SCM_RIGHTS) on its line; %s%zu came", want == 2 ?
		    "two descriptors" : "one descriptor", fds->n >
		    PROTO_MAX_FDS ? "more than " : "", fds->n > PROTO_MAX_FDS ?
		    (size_t)PROTO_MAX_FDS : fds->n);
		reply_error(s->conn, r, PROTO_E_BAD_REQUEST, msg);
		return -1;
	}
	rc = locktab_resolve(s->host->locktab, &fds->fd[want - 1], key,
	    key_size, msg, sizeof msg);
	if (rc == 0)
		return 0;
	reply_error(s->conn, r, rc == -EOPNOTSUPP || rc == -EINVAL ?
	    PROTO_E_UNSUPPORTED : PROTO_E_INTERNAL, msg);
	return -1;
}

/* Reply to an acquire the lock table refused with errno -rc. */
static void
acquire_failed(struct session *s, const struct proto_request *r, int rc)
{
	struct session_host	*host = s->host;
	char			 msg[PATH_MAX + 512];	/* the store's text */

	if (rc == -EWOULDBLOCK) {
		host->metrics.scope[PROTO_SCOPE_LOCAL].timeouts++;
		reply_error(s->conn, r, PROTO_E_TIMEOUT, "the lock is held");
	} else if (rc == LOCKTAB_E_CYCLE) {
		deadlock_message(host->locktab, msg, sizeof msg);
		reply_error(s->conn, r, PROTO_E_DEADLOCK, msg);
	} else if (rc == LOCKTAB_E_NO_TOKENS) {
		/* No token left under the ceiling saved on disk. */
		reply_error(s->conn, r, PROTO_E_INTERNAL,
		    host->tokens_exhausted(host->arg));
	} else if (rc == LOCKTAB_E_MAX_PATHS) {
		reply_error(s->conn, r, PROTO_E_LIMIT, "too many path locks "
		    "are open: each keeps its file open, and they may take at "
		    "most half the daemon's descriptors (RLIMIT_NOFILE)");
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

/* Reply to a cluster acquire its table refused with errno -rc. */
static void
acquire_failed_cluster(struct session *s, const struct proto_request *r,
    int rc)
{
	char	 msg[512];

	if (rc == -EWOULDBLOCK) {
		s->host->metrics.scope[PROTO_SCOPE_CLUSTER].timeouts++;
		reply_error(s->conn, r, PROTO_E_TIMEOUT,
		    "the cluster lock is held");
		return;
	}
	if (locktab_explain(s->host->cluster, r->name, rc, msg,
	    sizeof msg) <= 0)
		snprintf(msg, sizeof msg, "cannot queue the cluster lock: %s",
		    strerror(-rc));
	reply_error(s->conn, r, rc == -ENOMEM ? PROTO_E_LIMIT :
	    PROTO_E_INTERNAL, msg);
}

/*
 * The identity and kernel path (as UTF-8, for list) of a client's
 * descriptor; 0 if unknown.
 */
static int
descriptor_file(int fd, struct listing_file *file, char *path, size_t size)
{
	struct stat	 sb;

	if (fstat(fd, &sb) == -1 || fd_path(fd, path, size) <= 0)
		return 0;
	utf8_clean(path);
	file->dev = sb.st_dev;
	file->ino = sb.st_ino;
	file->path = path;
	return 1;
}

/*
 * The descriptor form on a description that holds the flock already:
 * the caller asks for its own lock again, granted at once in the same
 * mode, as flock(2) would, with a new token.  A conversion is refused
 * untouched: done here without waiting it could lose the lock, and
 * flock(2) on the descriptor does it as flock(1) would.
 */
static void
handoff_again(struct session *s, const struct proto_request *r,
    const char *key, int fd, enum proto_mode held)
{
	struct json_object	*reply;
	struct handoff_info	 h;
	struct listing_file	 file;
	char			 shown[PATH_MAX];
	int64_t			 token;

	/* A failed LOCK_NB conversion would drop the lock it has. */
	if (r->mode != held) {
		reply_error(s->conn, r, PROTO_E_UNSUPPORTED, "this descriptor "
		    "holds the lock already, in the other mode: convert it "
		    "with flock(2) on the descriptor itself");
		return;
	}
	if ((token = locktab_take_token(s->host->locktab)) == 0) {
		reply_error(s->conn, r, PROTO_E_INTERNAL,
		    s->host->tokens_exhausted(s->host->arg));
		return;
	}
	/* list shows the holder with its new mode and token. */
	if (descriptor_file(fd, &file, shown, sizeof shown)) {
		memset(&h, 0, sizeof h);
		h.key = key;
		h.name = key[0] == '/' ? shown : key;
		h.dev = file.dev;
		h.ino = file.ino;
		handoff_holder(&h, &s->client, r->owner, r->mode, token);
		listing_handoff_add(s->host->listing, &h);
	}
	s->host->metrics.scope[PROTO_SCOPE_LOCAL].grants[r->mode]++;
	metrics_observe(&s->host->metrics.scope[PROTO_SCOPE_LOCAL].wait, 0);
	reply = reply_new(r);
	json_object_object_add(reply, "name", json_object_new_string(r->name));
	json_object_object_add(reply, "mode",
	    json_object_new_string(proto_mode_name(r->mode)));
	json_object_object_add(reply, "token", json_object_new_int64(token));
	json_object_object_add(reply, "waited", json_object_new_double(0));
	conn_send(s->conn, reply);
}

/* A new acquire, with its owner, id text and target in one allocation. */
static struct acquire *
acquire_alloc(struct session *s, const char *owner, const char *id_text,
    size_t id_len, const char *name)
{
	struct acquire	*a;
	size_t		 owner_size = strlen(owner) + 1;
	size_t		 target_size = strlen(name) + 1;
	char		*id, *target;

	if ((a = calloc(1, sizeof *a + owner_size + id_len + 1 +
	    target_size)) == NULL)
		return NULL;
	memcpy(a->text, owner, owner_size);
	a->holder.owner = a->text;
	a->holder.client = &s->client;
	id = a->text + owner_size;
	memcpy(id, id_text, id_len);
	id[id_len] = '\0';
	a->id_text = id;
	target = id + id_len + 1;
	memcpy(target, name, target_size);
	a->target = target;
	a->handoff_fd = -1;
	a->session = s;
	a->conn = s->conn;
	a->id_len = id_len;
	a->started = clock_monotonic();
	TAILQ_INSERT_TAIL(&s->acquires, a, entry);
	return a;
}

/* A new acquire of a request. */
static struct acquire *
acquire_new(struct session *s, const struct proto_request *r)
{
	return acquire_alloc(s, r->owner, r->id_text, r->id_len, r->name);
}

/*
 * Note the file a path's acquire is for, from its descriptors (a
 * handoff's two must be one file); -1 if they are not.
 */
static int
acquire_note_file(struct acquire *a, const struct descriptors *fds)
{
	struct stat	 sb, own;

	if (fstat(fds->fd[fds->n - 1], &sb) == -1)
		return -1;
	if (fds->n == 2 && (fstat(fds->fd[0], &own) == -1 ||
	    own.st_dev != sb.st_dev || own.st_ino != sb.st_ino))
		return -1;
	a->by_path = 1;
	a->path_dev = sb.st_dev;
	a->path_ino = sb.st_ino;
	return 0;
}

/* Check the bounds every acquire has; 0, or -1 after an error reply. */
static int
acquire_admit(struct session *s, const struct proto_request *r,
    const char *name, int cluster)
{
	if (acquire_find(s, name, cluster) != NULL) {
		reply_error(s->conn, r, PROTO_E_ALREADY_HELD,
		    "this connection already holds or awaits that name");
		return -1;
	}
	if (acquire_count(s) >= s->host->max_locks_per_client) {
		reply_error(s->conn, r, PROTO_E_LIMIT,
		    "too many locks held or awaited by this connection");
		return -1;
	}
	return 0;
}

/*
 * Whether a cluster request in mode must wait behind this daemon's own
 * holders or waiters: no need to ask etcd.  A shared request under
 * shared holders asks etcd whether it may join.
 */
static int
cluster_lock_busy(struct locktab *tab, const char *name,
    enum proto_mode mode)
{
	struct lock	*lock = locktab_find(tab, name);
	struct lock_req	*holder;

	if (lock == NULL)
		return 0;
	if (lock_first_waiter(lock) != NULL)
		return 1;
	holder = lock_first_holder(lock);
	return holder != NULL && (mode != PROTO_SHARED ||
	    lock_req_mode(holder) != PROTO_SHARED);
}

/*
 * A cluster acquire, in the etcd store's table.  A timeout of 0 waits
 * for etcd's first answer: the store's queued hook ends it if a take is
 * ahead (session_cluster_queued).
 */
static void
handle_acquire_cluster(struct session *s, const struct proto_request *r)
{
	struct session_host	*host = s->host;
	struct acquire		*a;
	struct lock_req		*req;
	int			 rc;

	if (host->cluster == NULL) {
		reply_error(s->conn, r, PROTO_E_UNSUPPORTED, "this locksd has "
		    "no cluster: start it with --etcd URL for cluster locks");
		return;
	}
	if (r->notify_contended) {
		reply_error(s->conn, r, PROTO_E_UNSUPPORTED, "notify_contended "
		    "is for local locks: a cluster lock's waiters on other "
		    "nodes queue in etcd, where this locksd does not see them");
		return;
	}
	if (r->detect_deadlock) {
		reply_error(s->conn, r, PROTO_E_UNSUPPORTED, "detect_deadlock "
		    "covers this daemon's local locks only: who waits for a "
		    "cluster lock on other nodes is not known here");
		return;
	}
	if (acquire_admit(s, r, r->name, 1) != 0)
		return;
	if ((a = acquire_new(s, r)) == NULL) {
		reply_error(s->conn, r, PROTO_E_LIMIT, "out of memory");
		return;
	}
	a->cluster = 1;
	a->try_only = r->timeout == 0;
	a->notify_after = r->notify_after;
	s->acquiring = a;
	rc = locktab_acquire(host->cluster, r->name, r->mode, a->try_only &&
	    cluster_lock_busy(host->cluster, r->name, r->mode), &a->holder,
	    &req);
	s->acquiring = NULL;
	if (rc != 0) {
		acquire_failed_cluster(s, r, rc);
		acquire_free(a);
		return;
	}
	a->req = req;
	if (!a->held && acquire_arm_timers(a, r) == -1) {
		reply_error(s->conn, r, PROTO_E_LIMIT, "out of memory");
		acquire_drop(a);
	}
}

static void
handle_acquire(struct session *s, const struct proto_request *r,
    struct descriptors *fds)
{
	struct session_host	*host = s->host;
	struct acquire		*a;
	struct lock_req		*req;
	char			 key[PROTO_MAX_NAME + 1];
	const char		*name = r->name;
	enum proto_mode		 held;
	int			 rc;

	if (r->scope == PROTO_SCOPE_CLUSTER) {
		handle_acquire_cluster(s, r);
		return;
	}
	if (proto_is_path(r->name)) {
		if (path_resolve(s, r, fds, r->handoff ? 2 : 1, key,
		    sizeof key) != 0)
			return;
		if (r->handoff && store_file_fd_flocked(fds->fd[0], &held)) {
			handoff_again(s, r, key, fds->fd[0], held);
			return;
		}
		name = key;
	}
	if (acquire_admit(s, r, name, 0) != 0)
		return;
	if ((a = acquire_new(s, r)) == NULL) {
		reply_error(s->conn, r, PROTO_E_LIMIT,
		    "out of memory");
		return;
	}
	if (fds->n > 0 && acquire_note_file(a, fds) == -1) {
		reply_error(s->conn, r, PROTO_E_BAD_REQUEST, "the two "
		    "descriptors of a handoff are not of one file");
		acquire_free(a);
		return;
	}
	if (r->handoff) {
		a->handoff_fd = fds->fd[0];	/* the caller's, to flock */
		fds->fd[0] = -1;
	}
	if (*r->deadlock_group != '\0' && (a->group = group_get(host,
	    &s->client.peer, r->deadlock_group)) == NULL) {
		reply_error(s->conn, r, PROTO_E_LIMIT, "out of memory");
		acquire_free(a);
		return;
	}
	/* The lock table's arg is the holder, the acquire's first member. */
	s->acquiring = a;
	rc = locktab_acquire_as(host->locktab, name, fds->n > 0 ?
	    &fds->fd[fds->n - 1] : NULL, r->mode, r->timeout == 0,
	    a->group != NULL ? a->group->owner : s->owner,
	    r->detect_deadlock, &a->holder, &req);
	if (rc != 0) {
		s->acquiring = NULL;
		acquire_failed(s, r, rc);
		acquire_free(a);
		return;
	}
	if (s->acquiring == NULL)
		return;		/* granted at once and handed off: a is gone */
	s->acquiring = NULL;
	a->req = req;
	if (r->notify_contended)
		lock_req_notify_contended(req, 0);
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

	if ((a = acquire_find_target(s, r->name,
	    r->scope == PROTO_SCOPE_CLUSTER)) == NULL) {
		reply_error(s->conn, r, PROTO_E_NOT_HELD,
		    "this connection neither holds nor awaits that name");
		return;
	}
	if (!a->held) {
		s->host->metrics.cancels[METRICS_CANCEL_RELEASE]++;
		acquire_error(a, PROTO_E_CANCELLED,
		    "the wait was cancelled by a release");
	}
	if (a->convert_id != NULL)
		reply_error_id(a->conn, proto_id_parse(a->convert_id,
		    a->convert_id_len), PROTO_E_CANCELLED,
		    "the conversion was cancelled by a release");
	acquire_drop(a);
	reply_ok(s->conn, r->id_text, r->id_len);
}

/* Keep a waiting convert's id, and arm its timeout; -1 if out of memory. */
static int
convert_wait(struct acquire *a, const struct proto_request *r)
{
	if ((a->convert_id = malloc(r->id_len + 1)) == NULL)
		return -1;
	memcpy(a->convert_id, r->id_text, r->id_len);
	a->convert_id[r->id_len] = '\0';
	a->convert_id_len = r->id_len;
	if (r->timeout > 0 && acquire_arm(a, &a->convert_ev,
	    convert_timeout_cb, r->timeout) == -1) {
		acquire_convert_forget(a);
		return -1;
	}
	return 0;
}

/* Answer a convert the lock table did not take on, or could not. */
static void
convert_failed(struct session *s, const struct proto_request *r,
    struct acquire *a, int rc)
{
	char	 msg[PROTO_MAX_PATH + 256];

	switch (rc) {
	case -EWOULDBLOCK:
		reply_error(s->conn, r, PROTO_E_TIMEOUT, "the lock has other "
		    "holders, or an outside flock: an upgrade with timeout 0 "
		    "does not wait");
		break;
	case LOCKTAB_E_DEADLOCK:
		snprintf(msg, sizeof msg, "another holder of %s already waits "
		    "to convert it to exclusive: each would wait for the "
		    "other; this connection keeps its shared hold", a->target);
		reply_error(s->conn, r, PROTO_E_DEADLOCK, msg);
		break;
	case -EALREADY:
		reply_error(s->conn, r, PROTO_E_BAD_REQUEST, "a conversion of "
		    "that lock already waits on this connection");
		break;
	case LOCKTAB_E_NO_TOKENS:
		reply_error(s->conn, r, PROTO_E_INTERNAL,
		    s->host->tokens_exhausted(s->host->arg));
		break;
	case LOCKTAB_E_LOST:
		/* Not held underneath any more: it goes. */
		convert_lost(a, lock_req_token(a->req));
		reply_error(s->conn, r, PROTO_E_CANCELLED, convert_lost_msg);
		acquire_drop(a);
		break;
	default:
		reply_error(s->conn, r, PROTO_E_LIMIT, "out of memory");
		break;
	}
}

/*
 * Convert a lock this connection holds to the other mode, atomically: a
 * downgrade at once, an upgrade at once or once the other holders let go,
 * its shared hold kept all along.
 */
static void
handle_convert(struct session *s, const struct proto_request *r)
{
	struct acquire	*a;
	int		 rc;

	a = acquire_find_target(s, r->name, r->scope == PROTO_SCOPE_CLUSTER);
	if (a == NULL || !a->held) {
		reply_error(s->conn, r, PROTO_E_NOT_HELD, a == NULL ?
		    "this connection does not hold that name" :
		    "this connection still waits for that name: only a held "
		    "lock converts");
		return;
	}
	if (a->cluster) {
		reply_error(s->conn, r, PROTO_E_UNSUPPORTED, "a cluster lock "
		    "does not convert: release it and acquire it in the "
		    "other mode");
		return;
	}
	if (a->convert_id != NULL) {
		convert_failed(s, r, a, -EALREADY);
		return;
	}
	rc = locktab_convert(acquire_table(a), a->req, r->mode,
	    r->timeout == 0);
	if (rc == 0)
		convert_reply(a, r->id_text, r->id_len);
	else if (rc == 1) {
		if (convert_wait(a, r) == -1) {
			locktab_convert_cancel(acquire_table(a), a->req);
			convert_failed(s, r, a, -ENOMEM);
		}
	} else
		convert_failed(s, r, a, rc);
}

/*
 * Before a reload: a waiting upgrade cannot go along (the state keeps
 * holds and waits, not conversions), so each gets an error, its hold kept.
 */
void
session_convert_drop_all(struct session_host *host)
{
	struct session	*s;
	struct acquire	*a;

	TAILQ_FOREACH(s, &host->sessions, entry) {
		TAILQ_FOREACH(a, &s->acquires, entry)
			convert_abandon(a, PROTO_E_UNAVAILABLE, "locksd is "
			    "reloading: the conversion was given up and the "
			    "lock is still held as before; convert again");
	}
}

/* The answer to a cluster list: send it, or say etcd is out of reach. */
static void
list_cluster_cb(struct json_object *locks, void *arg)
{
	struct session		*s = arg;
	struct json_object	*reply, *id = s->list_id;

	s->listing = NULL;
	s->list_id = NULL;
	if (locks == NULL) {
		reply_error_id(s->conn, id, PROTO_E_UNAVAILABLE, "etcd is not "
		    "reachable: no endpoint of --etcd answered");
		return;
	}
	reply = proto_reply_new(id, 1);
	json_object_put(id);
	json_object_object_add(reply, "locks", locks);
	json_object_object_add(reply, "more", json_object_new_boolean(0));
	conn_send(s->conn, reply);
}

/* list with "scope":"cluster": read every node's keys from etcd. */
static void
handle_list_cluster(struct session *s, const struct proto_request *r)
{
	if (s->host->etcd == NULL) {
		reply_error(s->conn, r, PROTO_E_UNSUPPORTED, "this locksd has "
		    "no cluster: start it with --etcd URL for cluster locks");
		return;
	}
	/* One list in flight per connection bounds what etcd is asked. */
	if (s->listing != NULL) {
		reply_error(s->conn, r, PROTO_E_LIMIT, "a cluster list is "
		    "already in flight on this connection (at most 1)");
		return;
	}
	s->list_id = proto_request_id(r);
	if ((s->listing = store_etcd_list(s->host->etcd, r->name,
	    list_cluster_cb, s)) == NULL) {
		reply_error_id(s->conn, s->list_id, PROTO_E_LIMIT,
		    "out of memory");
		s->list_id = NULL;
	}
}

static void
handle_list(struct session *s, const struct proto_request *r,
    struct descriptors *fds)
{
	struct json_object	*reply, *locks;
	struct listing_file	 file, *filep = NULL;
	char			 key[PROTO_MAX_NAME + 1], path[PATH_MAX];
	const char		*name = r->name;
	int			 more;

	if (r->scope == PROTO_SCOPE_CLUSTER) {
		handle_list_cluster(s, r);
		return;
	}
	if (name != NULL && proto_is_path(name)) {
		if (path_resolve(s, r, fds, 1, key, sizeof key) != 0)
			return;
		name = key;
		if (descriptor_file(fds->fd[0], &file, path, sizeof path))
			filep = &file;
	}
	reply = reply_new(r);
	locks = listing_locks(s->host->listing, name, filep, r->all, r->after,
	    (size_t)r->limit, &more);
	json_object_object_add(reply, "locks", locks);
	json_object_object_add(reply, "more", json_object_new_boolean(more));
	conn_send(s->conn, reply);
}

/* The cluster's part of status: this node, its cluster grants and waits. */
static struct json_object *
cluster_status(struct session_host *host)
{
	struct json_object	*obj = json_object_new_object();

	json_object_object_add(obj, "node",
	    json_object_new_string(store_etcd_node(host->etcd)));
	json_object_object_add(obj, "locks_held",
	    json_object_new_int64((int64_t)locktab_nheld(host->cluster)));
	json_object_object_add(obj, "waiters",
	    json_object_new_int64((int64_t)locktab_nwaiting(host->cluster)));
	json_object_object_add(obj, "acquired_total", json_object_new_int64(
	    (int64_t)locktab_granted_total(host->cluster)));
	return obj;
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
	if (host->cluster != NULL)
		json_object_object_add(reply, "cluster",
		    cluster_status(host));
	if (r->metrics)
		json_object_object_add(reply, "metrics",
		    metrics_encode(host));
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

/*
 * Whether the descriptors that came with a request are the ones it takes:
 * only a path's acquire and list take any.
 */
static int
descriptors_expected(struct session *s, const struct proto_request *r,
    const struct descriptors *fds)
{
	if (fds->n == 0 || (r->name != NULL && proto_is_path(r->name) &&
	    (r->op == PROTO_OP_ACQUIRE || r->op == PROTO_OP_LIST)))
		return 1;
	reply_error(s->conn, r, PROTO_E_BAD_REQUEST, "a descriptor came with "
	    "a request that takes none: only an acquire or list of a path "
	    "(a name with a '/') carries one");
	return 0;
}

/* Answer one decoded request, or the error its decoding found. */
static void
session_dispatch(struct session *s, const struct proto_request *r,
    enum proto_error error, const char *msg, struct descriptors *fds)
{
	if (error != PROTO_OK) {
		reply_error(s->conn, r, error, msg);
		return;
	}
	if (!descriptors_expected(s, r, fds))
		return;
	switch (r->op) {
	case PROTO_OP_HELLO:
		handle_hello(s, r);
		break;
	case PROTO_OP_PING:
		reply_ok(s->conn, r->id_text, r->id_len);
		break;
	case PROTO_OP_ACQUIRE:
		handle_acquire(s, r, fds);
		break;
	case PROTO_OP_RELEASE:
		handle_release(s, r);
		break;
	case PROTO_OP_LIST:
		handle_list(s, r, fds);
		break;
	case PROTO_OP_STATUS:
		handle_status(s, r);
		break;
	case PROTO_OP_CONVERT:
		handle_convert(s, r);
		break;
	}
}

/*
 * The one tokener every session parses with: each line is parsed whole
 * and the tokener reset first, so none needs its own (a kilobyte a
 * connection, and an allocation per accept and per restore).
 */
static struct json_tokener *
host_tokener(struct session_host *host)
{
	if (host->tok == NULL)
		host->tok = proto_tokener_new();
	return host->tok;
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

	struct descriptors	 fds;

	fds.n = conn_take_fds(s->conn, fds.fd, PROTO_MAX_FDS);
	if (proto_blank(line, len)) {
		descriptors_close(&fds);
		return;
	}
	if (host_tokener(s->host) == NULL) {
		conn_close_with(s->conn, PROTO_E_INTERNAL, "out of memory");
		descriptors_close(&fds);
		return;
	}
	error = proto_request_parse(s->host->tok, line, len, &scratch, &r,
	    &obj, &msg);
	session_dispatch(s, &r, error, msg, &fds);
	descriptors_close(&fds);
	json_object_put(obj);
}

/* Release every lock and cancel every wait of the session. */
static void
session_drop_all(struct session *s)
{
	struct acquire	*a;

	while ((a = TAILQ_FIRST(&s->acquires)) != NULL) {
		if (!a->held)
			s->host->metrics.cancels[METRICS_CANCEL_DISCONNECT]++;
		acquire_drop(a);
	}
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
	locktab_owner_free(s->owner);
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
	    (s->client.label = strdup("")) == NULL) {
		log_warnx("out of memory accepting a connection");
		if (s != NULL)
			session_free_parts(s);
		close(fd);
		return NULL;
	}
	if ((s->owner = locktab_owner_new(&s->client.peer)) == NULL) {
		log_warnx("out of memory accepting a connection");
		session_free_parts(s);
		close(fd);
		return NULL;
	}
	if ((s->conn = conn_new(host->base, fd, host->output_high,
	    &session_conn_cb, s)) == NULL) {
		session_free_parts(s);
		return NULL;
	}
	conn_set_counters(s->conn, &host->metrics.conn);
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
	store_etcd_list_cancel(s->listing);
	json_object_put(s->list_id);
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
	if (host->tok != NULL)
		json_tokener_free(host->tok);
	host->tok = NULL;
}

/*
 * What a reload keeps of a session, into ss, as the index-th: its
 * client, its conn (conn_export) and its acquires, in an array ss owns;
 * strings are borrowed.  -1 if out of memory.
 */
int
session_export(struct session *s, uint32_t index, struct snap_session *ss)
{
	struct snap_acquire	*sa;
	struct acquire		*a;
	uint32_t		 n = 0;

	s->snap_index = index;
	conn_export(s->conn, ss);
	ss->peer = s->client.peer;
	ss->label = s->client.label;
	ss->counted = s->uid_counted;
	ss->nacquires = (uint32_t)acquire_count(s);
	if (ss->nacquires > 0 && (ss->acquires = calloc(ss->nacquires,
	    sizeof *ss->acquires)) == NULL)
		return -1;
	TAILQ_FOREACH(a, &s->acquires, entry) {
		a->snap_index = n;
		sa = &ss->acquires[n++];
		sa->target = (char *)a->target;
		sa->owner = (char *)a->holder.owner;
		sa->id_text = (char *)a->id_text;
		sa->held = a->held;
		sa->mode = a->req != NULL ? lock_req_mode(a->req) : 0;
		sa->token = a->req != NULL && a->held ?
		    lock_req_token(a->req) : 0;
		sa->since = a->req != NULL ? lock_req_since(a->req) : 0;
		sa->started = a->started;
		sa->timeout_at = a->timeout_ev != NULL ? a->timeout_at : 0;
		sa->notify_at = a->notify_ev != NULL ? a->notify_at : 0;
		sa->by_path = a->by_path;
		sa->path_dev = a->path_dev;
		sa->path_ino = a->path_ino;
		sa->handoff_fd = a->handoff_fd;
		sa->notify_contended = a->req != NULL &&
		    lock_req_notifies(a->req, &sa->told_at);
		sa->detect_deadlock = !a->cluster && a->req != NULL &&
		    lock_req_detects(a->req);
	}
	return 0;
}

/* Which session and acquire a lock request of the state being saved is. */
void
session_req_ref(const struct lock_req *req, struct snap_req *ret_ref)
{
	const struct acquire	*a = lock_req_arg(req);

	ret_ref->session = a->session->snap_index;
	ret_ref->acquire = a->snap_index;
}

/*
 * A session as a reload kept it, over its conn (conn_restore), with no
 * acquires yet: session_restore_acquire adds them.  NULL if out of
 * memory, with its descriptors closed.
 */
struct session *
session_restore(struct session_host *host, const struct snap_session *ss,
    int counted)
{
	struct session	*s;

	if ((s = calloc(1, sizeof *s)) == NULL ||
	    (s->client.label = strdup(ss->label != NULL ? ss->label : "")) ==
	    NULL || (s->owner = locktab_owner_new(&s->client.peer)) == NULL) {
		log_warnx("out of memory restoring a connection");
		if (s != NULL)
			session_free_parts(s);
		close(ss->fd);
		return NULL;
	}
	s->host = host;
	TAILQ_INIT(&s->acquires);
	if ((s->conn = conn_restore(host->base, ss, host->output_high,
	    &session_conn_cb, s)) == NULL) {
		session_free_parts(s);
		return NULL;
	}
	conn_set_counters(s->conn, &host->metrics.conn);
	s->client.peer = ss->peer;
	s->uid_counted = counted;
	TAILQ_INSERT_TAIL(&host->sessions, s, entry);
	host->nsessions++;
	return s;
}

/* A restored grant's monotonic time, from when (realtime) it was made. */
static double
restored_grant_time(double since)
{
	double	 now = clock_monotonic(), age = clock_realtime() - since;

	return age > 0 && age < now ? now - age : now;
}

/* Re-arm a restored waiter's timers for what is left of them. */
static int
acquire_rearm(struct acquire *a, const struct snap_acquire *sa)
{
	double	 now = clock_monotonic();

	if (sa->timeout_at > 0) {
		a->timeout_at = sa->timeout_at;
		if (acquire_arm(a, &a->timeout_ev, acquire_timeout_cb,
		    sa->timeout_at - now) == -1)
			return -1;
	}
	if (sa->notify_at > 0) {
		a->notify_at = sa->notify_at;
		if (acquire_arm(a, &a->notify_ev, acquire_notify_cb,
		    sa->notify_at - now) == -1)
			return -1;
	}
	return 0;
}

/*
 * Put back one acquire of a restored session, at the tail of the
 * restored lock's holders or waiters, as it was.  It takes sa's
 * handoff_fd (-1 left behind).  0, or -errno with nothing added.
 */
int
session_restore_acquire(struct session *s, struct snap_acquire *sa,
    struct lock *lock)
{
	struct acquire	*a;
	struct lock_req	*req;
	int		 rc;

	if (sa->target == NULL || sa->owner == NULL || sa->id_text == NULL ||
	    acquire_find(s, lock_name(lock), 0) != NULL)
		return -EINVAL;
	/* Granted without the caller's descriptor, it would flock another. */
	if (sa->had_handoff && sa->handoff_fd < 0)
		return -EBADF;
	if ((a = acquire_alloc(s, sa->owner, sa->id_text, strlen(sa->id_text),
	    sa->target)) == NULL)
		return -ENOMEM;
	a->started = sa->started;
	a->held = sa->held;
	a->by_path = sa->by_path;
	a->path_dev = (dev_t)sa->path_dev;
	a->path_ino = (ino_t)sa->path_ino;
	if ((rc = locktab_restore_req(lock, sa->mode, sa->held, sa->token,
	    sa->since, &a->holder, &req)) != 0) {
		acquire_free(a);
		return rc;
	}
	a->req = req;
	if (sa->notify_contended)
		lock_req_notify_contended(req, sa->told_at);
	lock_req_set_owner(req, s->owner, sa->detect_deadlock != 0);
	a->handoff_fd = sa->handoff_fd;
	sa->handoff_fd = -1;
	if (a->held)
		a->granted_at = restored_grant_time(sa->since);
	if (!a->held && acquire_rearm(a, sa) == -1) {
		acquire_drop(a);
		return -ENOMEM;
	}
	return 0;
}

/*
 * For metrics: how many connections are throttled (reading paused for
 * unread replies), and how many reply bytes those have not read.
 */
void
session_output(struct session_host *host, size_t *ret_conns,
    size_t *ret_bytes)
{
	struct session	*s;
	size_t		 n = 0, bytes = 0;

	TAILQ_FOREACH(s, &host->sessions, entry) {
		if (conn_throttled(s->conn)) {
			n++;
			bytes += conn_unsent(s->conn);
		}
	}
	*ret_conns = n;
	*ret_bytes = bytes;
}

/* Export every session into s->sessions (session_export); -1 if no memory. */
int
session_export_all(struct session_host *host, struct snap *snap)
{
	struct session	*s;
	uint32_t	 n = 0;

	if (host->nsessions == 0)
		return 0;
	if ((snap->sessions = calloc(host->nsessions,
	    sizeof *snap->sessions)) == NULL)
		return -1;
	TAILQ_FOREACH(s, &host->sessions, entry) {
		snap->nsessions = n + 1;
		if (session_export(s, n, &snap->sessions[n]) == -1)
			return -1;
		n++;
	}
	return 0;
}
