/*
 * The events the daemon sends, in the one place liblocks understands
 * them.  transport.c hands over every line that is not a final reply:
 * during a transaction, with the acquire's struct blocking when the event
 * carries that request's id (else NULL); and between requests, from
 * conn_drain (locks_check, locks_held), always with NULL.
 *
 * A new event is a row in event_handlers and its handler here.  An event
 * with no row is dropped, as PROTOCOL.md asks of clients.  An event
 * read along with a final reply is handed over before the transaction
 * returns (conn_handle_buffered), also with NULL, so nothing waits in the
 * buffer where poll(2) cannot see it.
 */

#include <string.h>

#include "liblocks.h"

/* Handle one event; an error breaks the transaction that read it. */
typedef int (*event_handler)(locks_conn *, struct json_object *,
    const struct blocking *);

static int	 event_blocking(locks_conn *, struct json_object *,
		    const struct blocking *);
static int	 event_lost(locks_conn *, struct json_object *,
		    const struct blocking *);
static int	 event_contended(locks_conn *, struct json_object *,
		    const struct blocking *);

static const struct {
	const char	*name;
	event_handler	 handle;
} event_handlers[] = {
	{ "blocking", event_blocking },
	{ "lost", event_lost },
	{ "contended", event_contended },
};

/*
 * Someone waits behind a lock this connection holds: hand the count and
 * the first waiter to the lock's on_contended.  An event for no lock that
 * asked is dropped; a malformed one for a lock that did is a protocol
 * error; out of memory only skips the notice.
 */
static int
event_contended(locks_conn *conn, struct json_object *event,
    const struct blocking *blk)
{
	struct json_object	*name, *waiters, *first;
	locks_holder		 h;
	int			 error;

	(void)blk;
	if (!json_object_object_get_ex(event, "name", &name) ||
	    !json_object_is_type(name, json_type_string) ||
	    !conn_contended_watched(conn, json_object_get_string(name)))
		return LOCKS_OK;
	if (!json_object_object_get_ex(event, "waiters", &waiters) ||
	    !json_object_is_type(waiters, json_type_int) ||
	    !json_object_object_get_ex(event, "first", &first)) {
		error_msg(conn, "malformed contended event");
		return conn_break(conn, LOCKS_E_PROTOCOL);
	}
	error = decode_holder(first, &h);
	if (error == LOCKS_OK)
		conn_contended(conn, json_object_get_string(name),
		    json_object_get_int(waiters), &h);
	decode_holder_clear(&h);
	if (error == LOCKS_E_PROTOCOL) {
		error_msg(conn, "malformed contended event");
		return conn_break(conn, LOCKS_E_PROTOCOL);
	}
	return LOCKS_OK;
}

/*
 * A lock taken away: a cluster lock whose etcd lease lapsed, or a local
 * one an upgrade lost to an outside flock.  Forget it, so that
 * locks_held says no and locks_check returns LOCKS_E_LOST once.
 */
static int
event_lost(locks_conn *conn, struct json_object *event,
    const struct blocking *blk)
{
	struct json_object	*name, *scope;

	(void)blk;
	if (!json_object_object_get_ex(event, "name", &name) ||
	    !json_object_is_type(name, json_type_string))
		return LOCKS_OK;
	if (json_object_object_get_ex(event, "scope", &scope) &&
	    json_object_is_type(scope, json_type_string) &&
	    strcmp(json_object_get_string(scope), "local") == 0)
		conn_local_lost(conn, json_object_get_string(name));
	else
		conn_cluster_lost(conn, json_object_get_string(name));
	return LOCKS_OK;
}

/*
 * Hand a blocking event to the acquire's callback.  A malformed event is
 * a protocol error; running out of memory only skips the notice, since
 * the acquire itself is still pending and must not be abandoned.
 */
static int
event_blocking(locks_conn *conn, struct json_object *event,
    const struct blocking *blk)
{
	struct json_object	*pos;
	locks_lock		 lock;
	int			 error, position = 0;

	if (blk == NULL || blk->cb == NULL)
		return LOCKS_OK;
	if (json_object_object_get_ex(event, "position", &pos) &&
	    json_object_is_type(pos, json_type_int))
		position = json_object_get_int(pos);
	memset(&lock, 0, sizeof lock);
	if (decode_string(blk->name, &lock.name) != LOCKS_OK)
		return LOCKS_OK;
	error = decode_holders(event, "holders", &lock.holders,
	    &lock.nholders);
	if (error == LOCKS_E_PROTOCOL) {
		decode_lock_clear(&lock);
		error_msg(conn, "malformed blocking event");
		return conn_break(conn, LOCKS_E_PROTOCOL);
	}
	if (error == LOCKS_OK)
		blk->cb(&lock, position, blk->arg);
	decode_lock_clear(&lock);
	return LOCKS_OK;
}

/*
 * Pass an event to its handler, with blk for an event of the request
 * being waited for (else NULL).  Unknown events are dropped.
 */
int
event_dispatch(locks_conn *conn, struct json_object *event,
    const struct blocking *blk)
{
	struct json_object	*kind;
	const char		*name;
	size_t			 i;

	if (!json_object_object_get_ex(event, "event", &kind) ||
	    !json_object_is_type(kind, json_type_string))
		return LOCKS_OK;
	name = json_object_get_string(kind);
	for (i = 0; i < sizeof event_handlers / sizeof event_handlers[0];
	    i++) {
		if (strcmp(name, event_handlers[i].name) == 0)
			return event_handlers[i].handle(conn, event, blk);
	}
	return LOCKS_OK;
}
