/*
 * What list and the blocking event show: each lock's broker holders and
 * waiters, plus the processes outside the broker that flock its file.
 * With "all", files in the lock directory held only from outside (and
 * awaited by nobody) are listed too.
 */

#include <sys/stat.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"

/*
 * The outside flocks on the lock directory's device, borrowed from the
 * server's cache of /proc/locks (at most 100 ms old), sorted by inode.
 */
struct outside {
	struct outside_holder	*holders;
	size_t			 n;
};

#define OUTSIDE_TRIES	4	/* looks at /proc/locks per reply, at most */
#define LIST_REPLY_BYTES (256 * 1024)	/* of locks in one list reply */

static int	outside_holds(const struct outside *, ino_t);
static ino_t	lock_ino(struct lock *);

/* One listed name: a broker lock, or a file held only from outside. */
struct entry {
	char			 name[PROTO_MAX_NAME + 1];
	struct lock		*lock;		/* NULL: outside only */
	ino_t			 ino;
};

/*
 * Get the outside flocks, if needed at all.  A blocked lock is held
 * outside by definition, so if the scan shows no holder of one of them
 * (/proc/locks is only consistent a page at a time), ask for a new read,
 * which the cache allows a few times per scan.
 */
static void
outside_read(struct listing *listing, struct outside *out, struct lock **blocked,
    size_t nblocked, int needed)
{
	struct stat	 sb;
	size_t		 i, try;

	out->holders = NULL;
	out->n = 0;
	if (!needed || fstat(listing->lock_dirfd, &sb) == -1)
		return;
	for (try = 0; try < OUTSIDE_TRIES; try++) {
		out->n = outside_get(listing->outside, sb.st_dev, try > 0,
		    &out->holders);
		for (i = 0; i < nblocked; i++) {
			if (!outside_holds(out, lock_ino(blocked[i])))
				break;
		}
		if (i == nblocked)
			return;
	}
}

/* The inode of a lock's file (0 if unknown). */
static ino_t
lock_ino(struct lock *lock)
{
	struct stat	 sb;

	return fstat(lock_fd(lock), &sb) == 0 ? sb.st_ino : 0;
}

/* Whether some outside process flocks inode ino. */
static int
outside_holds(const struct outside *out, ino_t ino)
{
	return outside_find(out->holders, out->n, ino) != NULL;
}

/*
 * Whether a process outside the broker may flock the lock's file: only
 * if it is blocked, or the broker holds it shared, which an outside
 * shared flock can join.
 */
static int
lock_may_have_outsiders(struct lock *lock)
{
	struct lock_req	*first = lock_first_holder(lock);

	return lock_blocked(lock) ||
	    (first != NULL && lock_req_mode(first) == PROTO_SHARED);
}

/* Describe one broker holder or waiter, from the plain data it carries. */
static struct json_object *
holder_encode(struct lock_req *req)
{
	const struct holder_info	*holder = lock_req_arg(req);
	const struct client_info	*client = holder->client;
	struct proto_holder		 h;

	memset(&h, 0, sizeof h);
	h.pid = client->peer.pid;
	h.uid = client->peer.uid;
	h.gid = client->peer.gid;
	h.client = client->label;
	h.owner = holder->owner;
	h.mode = lock_req_mode(req);
	h.since = lock_req_since(req);
	h.token = lock_req_held(req) ? lock_req_token(req) : 0;
	return proto_holder_encode(&h);
}

/* Append broker requests from first on, then outside holders of ino. */
static struct json_object *
holders_array(struct lock_req *first, const struct outside *out, ino_t ino)
{
	struct json_object	*array = json_object_new_array();
	struct outside_holder	*h, *end;
	struct lock_req		*req;

	for (req = first; req != NULL; req = lock_req_next(req))
		json_object_array_add(array, holder_encode(req));
	if (out == NULL || ino == 0 ||
	    (h = outside_find(out->holders, out->n, ino)) == NULL)
		return array;
	for (end = out->holders + out->n; h < end && h->ino == ino; h++)
		json_object_array_add(array, outside_encode(h));
	return array;
}

/* The holders of one lock, broker and outside, for a blocking event. */
struct json_object *
listing_holders(struct listing *listing, struct lock *lock)
{
	struct outside		 out;
	struct lock_req		*first = lock_first_holder(lock);

	if (!lock_may_have_outsiders(lock))
		return holders_array(first, NULL, 0);
	outside_read(listing, &out, &lock, lock_blocked(lock) ? 1 : 0, 1);
	return holders_array(first, &out, out.n > 0 ? lock_ino(lock) : 0);
}

/* Add an entry, growing the array; -1 if out of memory. */
static int
entry_add(struct entry **entries, size_t *n, size_t *cap, const char *name,
    struct lock *lock, ino_t ino)
{
	struct entry	*grown;
	size_t		 len = strlen(name);

	/* Callers pass valid names only; never truncate one silently. */
	if (len > PROTO_MAX_NAME)
		return -1;
	if (*n == *cap) {
		*cap = *cap == 0 ? 16 : *cap * 2;
		if ((grown = reallocarray(*entries, *cap, sizeof **entries))
		    == NULL)
			return -1;
		*entries = grown;
	}
	memcpy((*entries)[*n].name, name, len + 1);
	(*entries)[*n].lock = lock;
	(*entries)[*n].ino = ino;
	(*n)++;
	return 0;
}

/* Whether a lock file named name (of inode ino) is held only outside. */
static int
outside_only(struct listing *listing, const struct outside *out, const char *name,
    ino_t *ret_ino)
{
	struct stat	 sb;

	if (!proto_name_valid(name, strlen(name)) ||
	    locktab_find(listing->locktab, name) != NULL)
		return 0;
	if (fstatat(listing->lock_dirfd, name, &sb,
	    AT_SYMLINK_NOFOLLOW) == -1 || !S_ISREG(sb.st_mode))
		return 0;
	*ret_ino = sb.st_ino;
	return outside_holds(out, sb.st_ino);
}

/* Add the files of the lock directory held only from outside. */
static void
entries_add_outside(struct listing *listing, const struct outside *out,
    const char *name, struct entry **entries, size_t *n, size_t *cap)
{
	struct dirent	*de;
	DIR		*dir;
	ino_t		 ino;
	int		 fd;

	if (out->n == 0)
		return;
	if (name != NULL) {
		if (outside_only(listing, out, name, &ino))
			entry_add(entries, n, cap, name, NULL, ino);
		return;
	}
	fd = openat(listing->lock_dirfd, ".",
	    O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd == -1 || (dir = fdopendir(fd)) == NULL) {
		if (fd != -1)
			close(fd);
		log_warn("read lock dir");
		return;
	}
	while ((de = readdir(dir)) != NULL) {
		/* Most files are flocked by nobody: no fstatat for those. */
		if (outside_find(out->holders, out->n, de->d_ino) == NULL)
			continue;
		if (outside_only(listing, out, de->d_name, &ino) &&
		    entry_add(entries, n, cap, de->d_name, NULL, ino) == -1)
			break;
	}
	closedir(dir);
}

static int
entry_cmp(const void *a, const void *b)
{
	return strcmp(((const struct entry *)a)->name,
	    ((const struct entry *)b)->name);
}

/* Collect what to list: broker locks (one name, or all), then outsiders. */
static size_t
entries_collect(struct listing *listing, const struct outside *out,
    const char *name, int all, struct entry **ret)
{
	struct locktab	*tab = listing->locktab;
	struct entry	*entries = NULL;
	struct lock	*lock;
	size_t		 n = 0, cap = 0;

	if (name != NULL) {
		if ((lock = locktab_find(tab, name)) != NULL)
			entry_add(&entries, &n, &cap, name, lock,
			    out->n > 0 ? lock_ino(lock) : 0);
	} else {
		for (lock = locktab_first(tab); lock != NULL;
		    lock = locktab_next(lock)) {
			if (entry_add(&entries, &n, &cap, lock_name(lock),
			    lock, out->n > 0 ? lock_ino(lock) : 0) == -1)
				break;
		}
	}
	if (all)
		entries_add_outside(listing, out, name, &entries, &n, &cap);
	if (n > 0)
		qsort(entries, n, sizeof *entries, entry_cmp);
	*ret = entries;
	return n;
}

/*
 * The blocked locks among those listed (name, or all), for outside_read;
 * *ret_outsiders says whether any listed lock may have outside holders.
 */
static size_t
blocked_collect(struct listing *listing, const char *name, struct lock ***ret,
    int *ret_outsiders)
{
	struct locktab	*tab = listing->locktab;
	struct lock	*lock, **blocked;
	size_t		 n = 0;

	*ret = NULL;
	*ret_outsiders = 0;
	if (name != NULL) {
		if ((lock = locktab_find(tab, name)) == NULL)
			return 0;
		*ret_outsiders = lock_may_have_outsiders(lock);
		if (!lock_blocked(lock) || (*ret = malloc(sizeof **ret)) == NULL)
			return 0;
		(*ret)[0] = lock;
		return 1;
	}
	if ((blocked = calloc(locktab_nblocked(tab), sizeof *blocked)) == NULL)
		return 0;
	for (lock = locktab_first(tab); lock != NULL; lock = locktab_next(lock)) {
		if (lock_blocked(lock) && n < locktab_nblocked(tab))
			blocked[n++] = lock;
		if (!*ret_outsiders)
			*ret_outsiders = lock_may_have_outsiders(lock);
	}
	*ret = blocked;
	return n;
}

/*
 * The holders of a listed entry; a cached scan may be up to 100 ms old,
 * so outsiders are shown only where the broker's own holds allow them.
 */
static struct json_object *
entry_holders(const struct entry *entry, const struct outside *out)
{
	if (entry->lock == NULL)
		return holders_array(NULL, out, entry->ino);
	if (!lock_may_have_outsiders(entry->lock))
		return holders_array(lock_first_holder(entry->lock), NULL, 0);
	return holders_array(lock_first_holder(entry->lock), out, entry->ino);
}

/* The index of the first entry named past after (all, if after is NULL). */
static size_t
entries_after(const struct entry *entries, size_t n, const char *after)
{
	size_t	 lo = 0, hi = n, mid;

	if (after == NULL)
		return 0;
	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (strcmp(entries[mid].name, after) <= 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* One listed entry as the protocol shows it. */
static struct json_object *
entry_encode(const struct entry *entry, const struct outside *out)
{
	struct json_object	*obj = json_object_new_object();

	json_object_object_add(obj, "name",
	    json_object_new_string(entry->name));
	json_object_object_add(obj, "holders", entry_holders(entry, out));
	json_object_object_add(obj, "waiters", holders_array(
	    entry->lock ? lock_first_waiter(entry->lock) : NULL, NULL, 0));
	return obj;
}

/*
 * The "locks" array of a list reply: the entries named past after, at
 * most limit of them (0: PROTO_MAX_LIST), and no more once the array
 * passes LIST_REPLY_BYTES, so a reply that nobody reads pins a bounded
 * amount.  *ret_more says whether entries were left for another page.
 */
struct json_object *
listing_locks(struct listing *listing, const char *name, int all,
    const char *after, size_t limit, int *ret_more)
{
	struct json_object	*array, *obj;
	struct outside		 out;
	struct entry		*entries;
	struct lock		**blocked;
	size_t			 i, n, nblocked, bytes = 0, len, shown = 0;
	int			 outsiders;

	if (limit == 0 || limit > PROTO_MAX_LIST)
		limit = PROTO_MAX_LIST;
	nblocked = blocked_collect(listing, name, &blocked, &outsiders);
	outside_read(listing, &out, blocked, nblocked, all || outsiders);
	free(blocked);
	n = entries_collect(listing, &out, name, all, &entries);
	array = json_object_new_array();
	for (i = entries_after(entries, n, after); i < n; i++) {
		if (shown == limit || bytes >= LIST_REPLY_BYTES)
			break;
		obj = entry_encode(&entries[i], &out);
		if (json_object_to_json_string_length(obj,
		    JSON_C_TO_STRING_PLAIN, &len) != NULL)
			bytes += len;
		json_object_array_add(array, obj);
		shown++;
	}
	*ret_more = i < n;
	free(entries);
	return array;
}
