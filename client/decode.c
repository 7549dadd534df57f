/*
 * liblocks' decoding: replies and events turned into the public types
 * (holders, locks, lists, status), which own copies of their strings, and
 * the accessors and destructors of those types.
 */

#include <stdlib.h>
#include <string.h>

#include "liblocks.h"

_Static_assert((int)LOCKS_EXCLUSIVE == (int)PROTO_EXCLUSIVE &&
    (int)LOCKS_SHARED == (int)PROTO_SHARED,
    "locks_mode must mirror enum proto_mode");

/* Copy a string or fail; NULL becomes "". */
int
decode_string(const char *text, char **ret_copy)
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
		free(holders[i].node);
	}
	free(holders);
}

/*
 * Decode one holder or waiter object into h, zeroed first; on an error
 * what h got is for decode_holder_clear.
 */
int
decode_holder(struct json_object *obj, locks_holder *h)
{
	struct proto_holder	 ph;

	memset(h, 0, sizeof *h);
	if (proto_holder_decode(obj, &ph) != 0)
		return LOCKS_E_PROTOCOL;
	h->external = ph.external;
	h->pid = ph.pid;
	h->uid = ph.uid;
	h->gid = ph.gid;
	h->mode = ph.mode == PROTO_SHARED ? LOCKS_SHARED : LOCKS_EXCLUSIVE;
	h->since = ph.since;
	h->token = ph.token;
	if (decode_string(ph.client, &h->client) != LOCKS_OK ||
	    decode_string(ph.owner, &h->owner) != LOCKS_OK ||
	    decode_string(ph.command, &h->command) != LOCKS_OK ||
	    decode_string(ph.node, &h->node) != LOCKS_OK)
		return LOCKS_E_NOMEM;
	return LOCKS_OK;
}

/* Free the strings of one holder decode_holder filled. */
void
decode_holder_clear(locks_holder *h)
{
	free(h->client);
	free(h->owner);
	free(h->command);
	free(h->node);
	memset(h, 0, sizeof *h);
}

/* Decode a JSON array of holders (absent: none) into an owned array. */
int
decode_holders(struct json_object *obj, const char *key,
    locks_holder **ret_holders, size_t *ret_n)
{
	struct json_object	*array;
	locks_holder		*holders;
	size_t			 i, n;
	int			 error;

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
		if ((error = decode_holder(json_object_array_get_idx(array, i),
		    &holders[i])) != LOCKS_OK) {
			holders_free(holders, n);
			return error;
		}
	}
	*ret_holders = holders;
	*ret_n = n;
	return LOCKS_OK;
}

/* Free what a lock owns, not the lock itself. */
void
decode_lock_clear(locks_lock *lock)
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
	if ((error = decode_string(json_object_get_string(name),
	    &lock->name)) != LOCKS_OK)
		return error;
	if ((error = decode_holders(obj, "holders", &lock->holders,
	    &lock->nholders)) != LOCKS_OK ||
	    (error = decode_holders(obj, "waiters", &lock->waiters,
	    &lock->nwaiters)) != LOCKS_OK) {
		decode_lock_clear(lock);
		return error;
	}
	return LOCKS_OK;
}

/* Decode a list reply's "locks" array into list. */
int
decode_list(struct json_object *reply, locks_list *list)
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
int
decode_list_page(struct json_object *reply, struct json_object *all,
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
	    (after != NULL &&
	    strcmp(json_object_get_string(name), after) <= 0) ||
	    (size_t)json_object_get_string_len(name) >= size)
		return LOCKS_E_PROTOCOL;
	memcpy(last, json_object_get_string(name),
	    (size_t)json_object_get_string_len(name) + 1);
	return LOCKS_OK;
}

/* Read an optional integer field of a reply; 0 when absent. */
int64_t
decode_reply_int(struct json_object *reply, const char *key)
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
int
decode_status(struct json_object *reply, locks_status *status)
{
	struct json_object	*value;
	const char		*version = "";

	if (json_object_object_get_ex(reply, "version", &value) &&
	    json_object_is_type(value, json_type_string))
		version = json_object_get_string(value);
	if (decode_string(version, &status->version) != LOCKS_OK)
		return LOCKS_E_NOMEM;
	status->uptime = reply_double(reply, "uptime");
	status->connections = decode_reply_int(reply, "connections");
	status->locks_held = decode_reply_int(reply, "locks_held");
	status->waiters = decode_reply_int(reply, "waiters");
	status->acquired_total = decode_reply_int(reply, "acquired_total");
	return LOCKS_OK;
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

/* Return a cluster holder's node, as its locksd's --node names it. */
const char *
locks_holder_node(const locks_holder *h)
{
	return h->node;
}

/* Return the protocol's name of a mode, or NULL for no mode of ours. */
const char *
locks_mode_name(enum locks_mode mode)
{
	if (mode != LOCKS_EXCLUSIVE && mode != LOCKS_SHARED)
		return NULL;
	return proto_mode_name((enum proto_mode)mode);
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
		decode_lock_clear(&list->locks[i]);
	free(list->locks);
	free(list->json);
	free(list);
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

/* The metrics object, as one line of JSON. */
const char *
locks_metrics_json(const locks_metrics *metrics)
{
	return metrics->json;
}

/* The metrics as text in format (protocol/metrics.c), made once. */
const char *
locks_metrics_text(locks_metrics *metrics, enum locks_metrics_format format)
{
	int	 i = format == LOCKS_METRICS_OPENMETRICS;

	if (metrics->text[i] == NULL)
		metrics->text[i] = proto_metrics_text(metrics->obj, i ?
		    PROTO_METRICS_OPENMETRICS : PROTO_METRICS_PROMETHEUS,
		    NULL);
	return metrics->text[i];
}

/* Free metrics. */
void
locks_metrics_free(locks_metrics *metrics)
{
	if (metrics == NULL)
		return;
	json_object_put(metrics->obj);
	free(metrics->json);
	free(metrics->text[0]);
	free(metrics->text[1]);
	free(metrics);
}
