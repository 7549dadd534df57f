/*
 * What list and the blocking event show: each lock's broker holders and
 * waiters, plus the processes outside the broker that flock its file,
 * plus the descriptor-form locks the broker handed over to a client's own
 * open file (handoffs), for as long as /proc/locks shows them.  With
 * "all", files in the lock directory held only from outside (and awaited
 * by nobody) are listed too.  A path lock is listed under the path the
 * kernel gives the daemon's descriptor of it.
 */

#include <sys/stat.h>

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"

/*
 * The flocks on the machine, borrowed from the server's cache of
 * /proc/locks (at most 100 ms old), sorted by file; read_at is when the
 * scan was made (monotonic; < 0 if there is none).
 */
struct outside {
	struct outside_holder	*holders;
	size_t			 n;
	double			 read_at;
};

#define OUTSIDE_TRIES	8	/* looks at /proc/locks per reply, at most */
#define LIST_REPLY_BYTES (256 * 1024)	/* of locks in one list reply */
#define HANDOFF_MAX	4096	/* handoffs remembered at once */

/* One listed lock: a broker lock, or a file held only from outside. */
struct entry {
	char			*name;		/* as shown: name or path */
	struct lock		*lock;		/* NULL: outside only */
	dev_t			 dev;
	ino_t			 ino;
};

/* One handed-over lock: the holder as it was when it was granted. */
struct handoff {
	TAILQ_ENTRY(handoff)	 entry;
	char			*key;		/* the lock table's name */
	char			*name;		/* as shown */
	dev_t			 dev;
	ino_t			 ino;
	struct proto_holder	 holder;	/* strings owned here */
	pid_t			 parent;	/* shown once pid is gone */
	double			 at;		/* monotonic */
};

/*
 * Get the flocks, if needed at all.  A blocked lock is flocked by
 * somebody by definition, so if the scan shows nobody on one of them
 * (/proc/locks is only consistent a page at a time), ask for a new read,
 * which the cache allows a few times per scan.
 */
static void
outside_read(struct listing *listing, struct outside *out,
    struct lock **blocked, size_t nblocked, int needed)
{
	size_t	 i, try;
	dev_t	 dev;
	ino_t	 ino;

	out->holders = NULL;
	out->n = 0;
	out->read_at = -1;
	if (!needed && TAILQ_EMPTY(&listing->handoffs))
		return;
	for (try = 0; try < OUTSIDE_TRIES; try++) {
		out->n = outside_get(listing->outside, try > 0,
		    &out->holders, &out->read_at);
		for (i = 0; i < nblocked; i++) {
			lock_file_id(blocked[i], &dev, &ino);
			if (outside_find(out->holders, out->n, dev, ino) ==
			    NULL)
				break;
		}
		if (i == nblocked)
			return;
	}
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
	h.converting = lock_req_converting(req);
	return proto_holder_encode(&h);
}

/* Whether process pid is still there. */
static int
pid_alive(pid_t pid)
{
	char	 path[64];

	snprintf(path, sizeof path, "/proc/%ld", (long)pid);
	return access(path, F_OK) == 0;
}

static void
handoff_free(struct listing *listing, struct handoff *h)
{
	TAILQ_REMOVE(&listing->handoffs, h, entry);
	listing->nhandoffs--;
	free(h->key);
	free(h->name);
	free((char *)h->holder.client);
	free((char *)h->holder.owner);
	free(h);
}

/*
 * Forget the handoffs of dev:ino that the scan shows ended.  The daemon's
 * own flocks there are its store's (one, while broker clients hold the
 * lock) plus the handoffs still held; a scan older than a handoff cannot
 * tell, so those are kept.
 */
static void
handoffs_prune(struct listing *listing, const struct outside *out,
    dev_t dev, ino_t ino)
{
	struct handoff	*h, *next;
	struct lock	*lock;
	size_t		 live, known = 0;

	if (out->read_at < 0)
		return;
	live = outside_count(out->holders, out->n, dev, ino, 1);
	TAILQ_FOREACH(h, &listing->handoffs, entry) {
		if (h->dev != dev || h->ino != ino)
			continue;
		if (known++ == 0 && (lock = locktab_find(listing->locktab,
		    h->key)) != NULL && lock_file_flocked(lock) && live > 0)
			live--;
	}
	/* Oldest first: which of equal shared handoffs ended is unknown. */
	for (h = TAILQ_FIRST(&listing->handoffs); h != NULL && known > live;
	    h = next) {
		next = TAILQ_NEXT(h, entry);
		if (h->dev == dev && h->ino == ino && h->at < out->read_at) {
			handoff_free(listing, h);
			known--;
		}
	}
}

/* Append the handoffs of dev:ino still held, as holders. */
static void
handoffs_append(struct listing *listing, const struct outside *out,
    struct json_object *array, dev_t dev, ino_t ino)
{
	struct handoff		*h;
	struct proto_holder	 shown;

	handoffs_prune(listing, out, dev, ino);
	TAILQ_FOREACH(h, &listing->handoffs, entry) {
		if (h->dev != dev || h->ino != ino)
			continue;
		shown = h->holder;
		if (!pid_alive(shown.pid) && h->parent > 1)
			shown.pid = h->parent;
		json_object_array_add(array, proto_holder_encode(&shown));
	}
}

/*
 * Append broker requests from first on, then (with out) the handoffs and
 * the outside holders of dev:ino.
 */
static struct json_object *
holders_array(struct listing *listing, struct lock_req *first,
    const struct outside *out, dev_t dev, ino_t ino)
{
	struct json_object	*array = json_object_new_array();
	struct outside_holder	*h, *end;
	struct lock_req		*req;

	for (req = first; req != NULL; req = lock_req_next(req))
		json_object_array_add(array, holder_encode(req));
	if (out == NULL)
		return array;
	handoffs_append(listing, out, array, dev, ino);
	if ((h = outside_find(out->holders, out->n, dev, ino)) == NULL)
		return array;
	for (end = out->holders + out->n; h < end && h->dev == dev &&
	    h->ino == ino; h++) {
		if (!h->own)
			json_object_array_add(array, outside_encode(h));
	}
	return array;
}

/* One broker request as list shows it, for the contended event's first. */
struct json_object *
listing_request(struct lock_req *req)
{
	return holder_encode(req);
}

/* The holders of one lock, broker and outside, for a blocking event. */
struct json_object *
listing_holders(struct listing *listing, struct lock *lock)
{
	struct outside		 out;
	struct lock_req		*first = lock_first_holder(lock);
	dev_t			 dev;
	ino_t			 ino;

	if (!lock_may_have_outsiders(lock))
		return holders_array(listing, first, NULL, 0, 0);
	outside_read(listing, &out, &lock, lock_blocked(lock) ? 1 : 0, 1);
	lock_file_id(lock, &dev, &ino);
	return holders_array(listing, first, &out, dev, ino);
}

/* Remember a descriptor-form lock handed over; the strings are copied. */
void
listing_handoff_add(struct listing *listing, const struct handoff_info *info)
{
	struct handoff	*h, *old, *next;

	/* The same process asking again replaces what it asked before. */
	for (old = TAILQ_FIRST(&listing->handoffs); old != NULL; old = next) {
		next = TAILQ_NEXT(old, entry);
		if (old->dev == info->dev && old->ino == info->ino &&
		    old->holder.pid == info->holder.pid)
			handoff_free(listing, old);
	}
	if (listing->nhandoffs >= HANDOFF_MAX)
		handoff_free(listing, TAILQ_FIRST(&listing->handoffs));
	if ((h = calloc(1, sizeof *h)) == NULL ||
	    (h->key = strdup(info->key)) == NULL ||
	    (h->name = strdup(info->name)) == NULL ||
	    (h->holder.client = strdup(info->holder.client)) == NULL ||
	    (h->holder.owner = strdup(info->holder.owner)) == NULL) {
		if (h != NULL) {
			free(h->key);
			free(h->name);
			free((char *)h->holder.client);
		}
		free(h);
		log_warnx("out of memory noting a handed-over lock");
		return;
	}
	h->dev = info->dev;
	h->ino = info->ino;
	h->holder.pid = info->holder.pid;
	h->holder.uid = info->holder.uid;
	h->holder.gid = info->holder.gid;
	h->holder.mode = info->holder.mode;
	h->holder.since = info->holder.since;
	h->holder.token = info->holder.token;
	h->parent = info->parent;
	h->at = clock_monotonic();
	TAILQ_INSERT_TAIL(&listing->handoffs, h, entry);
	listing->nhandoffs++;
}

/* Set up the listing over the table, the flock scans and the lock dir. */
void
listing_init(struct listing *listing, struct locktab *locktab,
    struct outside_cache *outside, int lock_dirfd)
{
	listing->locktab = locktab;
	listing->outside = outside;
	listing->lock_dirfd = lock_dirfd;
	TAILQ_INIT(&listing->handoffs);
	listing->nhandoffs = 0;
}

/* Forget every handoff, at shutdown. */
void
listing_free(struct listing *listing)
{
	while (!TAILQ_EMPTY(&listing->handoffs))
		handoff_free(listing, TAILQ_FIRST(&listing->handoffs));
}

/* Add an entry, growing the array; -1 if out of memory. */
static int
entry_add(struct entry **entries, size_t *n, size_t *cap, const char *name,
    struct lock *lock, dev_t dev, ino_t ino)
{
	struct entry	*grown;
	char		*copy;

	if (*n == *cap) {
		*cap = *cap == 0 ? 16 : *cap * 2;
		if ((grown = reallocarray(*entries, *cap, sizeof **entries))
		    == NULL)
			return -1;
		*entries = grown;
	}
	if ((copy = strdup(name)) == NULL)
		return -1;
	(*entries)[*n].name = copy;
	(*entries)[*n].lock = lock;
	(*entries)[*n].dev = dev;
	(*entries)[*n].ino = ino;
	(*n)++;
	return 0;
}

/* Add a broker lock, under its path if it is a path lock. */
static int
entry_add_lock(struct entry **entries, size_t *n, size_t *cap,
    struct lock *lock)
{
	char	 shown[PATH_MAX];
	dev_t	 dev;
	ino_t	 ino;

	lock_file_path(lock, shown, sizeof shown);
	lock_file_id(lock, &dev, &ino);
	return entry_add(entries, n, cap, shown, lock, dev, ino);
}

static void
entries_free(struct entry *entries, size_t n)
{
	size_t	 i;

	for (i = 0; i < n; i++)
		free(entries[i].name);
	free(entries);
}

/* Whether some process flocks dev:ino, a handed-over lock included. */
static int
flocked(const struct outside *out, dev_t dev, ino_t ino)
{
	return outside_find(out->holders, out->n, dev, ino) != NULL;
}

/* Whether a lock file named name (of inode ino) is held only outside. */
static int
outside_only(struct listing *listing, const struct outside *out,
    const char *name, struct stat *sb)
{
	if (!proto_name_valid(name, strlen(name)) ||
	    locktab_find(listing->locktab, name) != NULL)
		return 0;
	if (fstatat(listing->lock_dirfd, name, sb,
	    AT_SYMLINK_NOFOLLOW) == -1 || !S_ISREG(sb->st_mode))
		return 0;
	return outside_count(out->holders, out->n, sb->st_dev, sb->st_ino,
	    0) > 0;
}

/* Add the files of the lock directory held only from outside. */
static void
entries_add_outside(struct listing *listing, const struct outside *out,
    const char *name, const struct listing_file *file,
    struct entry **entries, size_t *n, size_t *cap)
{
	struct dirent	*de;
	struct stat	 sb;
	DIR		*dir;
	int		 fd;

	if (out->n == 0 || fstat(listing->lock_dirfd, &sb) == -1)
		return;
	if (file != NULL) {
		if (locktab_find(listing->locktab, name) == NULL &&
		    outside_count(out->holders, out->n, file->dev, file->ino,
		    0) > 0)
			entry_add(entries, n, cap, file->path, NULL, file->dev,
			    file->ino);
		return;
	}
	if (name != NULL) {
		if (!proto_is_path(name) && outside_only(listing, out, name,
		    &sb))
			entry_add(entries, n, cap, name, NULL, sb.st_dev,
			    sb.st_ino);
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
		if (!flocked(out, sb.st_dev, de->d_ino))
			continue;
		if (outside_only(listing, out, de->d_name, &sb) &&
		    entry_add(entries, n, cap, de->d_name, NULL, sb.st_dev,
		    sb.st_ino) == -1)
			break;
		fstat(listing->lock_dirfd, &sb);
	}
	closedir(dir);
}

/* Forget the ended handoffs (of key, or all), one file at a time. */
static void
handoffs_prune_all(struct listing *listing, const struct outside *out,
    const char *key)
{
	struct handoff	*h;
	struct entry	*files;
	size_t		 i, n = 0;

	if (listing->nhandoffs == 0 ||
	    (files = calloc(listing->nhandoffs, sizeof *files)) == NULL)
		return;
	TAILQ_FOREACH(h, &listing->handoffs, entry) {
		if (key != NULL && strcmp(h->key, key) != 0)
			continue;
		files[n].dev = h->dev;
		files[n].ino = h->ino;
		n++;
	}
	/* A prune frees records of its file only, so the copies stay. */
	for (i = 0; i < n; i++)
		handoffs_prune(listing, out, files[i].dev, files[i].ino);
	free(files);
}

/* Whether one of the n entries is the file dev:ino. */
static int
entries_have(const struct entry *entries, size_t n, dev_t dev, ino_t ino)
{
	size_t	 i;

	for (i = 0; i < n; i++) {
		if (entries[i].dev == dev && entries[i].ino == ino)
			return 1;
	}
	return 0;
}

/*
 * Add the handed-over locks (of key, or all) that no entry lists yet:
 * once handed over, a lock nobody awaits is idle, which the table hides.
 */
static void
entries_add_handoffs(struct listing *listing, const struct outside *out,
    const char *key, struct entry **entries, size_t *n, size_t *cap)
{
	struct handoff	*h;

	handoffs_prune_all(listing, out, key);
	TAILQ_FOREACH(h, &listing->handoffs, entry) {
		if ((key != NULL && strcmp(h->key, key) != 0) ||
		    entries_have(*entries, *n, h->dev, h->ino))
			continue;
		if (entry_add(entries, n, cap, h->name, NULL, h->dev,
		    h->ino) == -1)
			break;
	}
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
    const char *name, const struct listing_file *file, int all,
    struct entry **ret)
{
	struct locktab	*tab = listing->locktab;
	struct entry	*entries = NULL;
	struct lock	*lock;
	size_t		 n = 0, cap = 0;

	if (name != NULL) {
		if ((lock = locktab_find(tab, name)) != NULL)
			entry_add_lock(&entries, &n, &cap, lock);
	} else {
		for (lock = locktab_first(tab); lock != NULL;
		    lock = locktab_next(lock)) {
			if (entry_add_lock(&entries, &n, &cap, lock) == -1)
				break;
		}
	}
	entries_add_handoffs(listing, out, name, &entries, &n, &cap);
	if (all)
		entries_add_outside(listing, out, name, file, &entries, &n,
		    &cap);
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
entry_holders(struct listing *listing, const struct entry *entry,
    const struct outside *out)
{
	if (entry->lock == NULL || lock_may_have_outsiders(entry->lock))
		return holders_array(listing, entry->lock != NULL ?
		    lock_first_holder(entry->lock) : NULL, out, entry->dev,
		    entry->ino);
	return holders_array(listing, lock_first_holder(entry->lock), NULL,
	    0, 0);
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
entry_encode(struct listing *listing, const struct entry *entry,
    const struct outside *out)
{
	struct json_object	*obj = json_object_new_object();

	json_object_object_add(obj, "name",
	    json_object_new_string(entry->name));
	json_object_object_add(obj, "holders",
	    entry_holders(listing, entry, out));
	json_object_object_add(obj, "waiters", holders_array(listing,
	    entry->lock ? lock_first_waiter(entry->lock) : NULL, NULL, 0, 0));
	return obj;
}

/*
 * The "locks" array of a list reply: the entries named past after, at
 * most limit of them (0: PROTO_MAX_LIST), and no more once the array
 * passes LIST_REPLY_BYTES, so a reply that nobody reads pins a bounded
 * amount.  *ret_more says whether entries were left for another page.
 * A path's lock (name its key) comes with its file, which "all" lists
 * when only outsiders flock it.
 */
struct json_object *
listing_locks(struct listing *listing, const char *name,
    const struct listing_file *file, int all, const char *after,
    size_t limit, int *ret_more)
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
	n = entries_collect(listing, &out, name, file, all, &entries);
	array = json_object_new_array();
	for (i = entries_after(entries, n, after); i < n; i++) {
		if (shown == limit || bytes >= LIST_REPLY_BYTES)
			break;
		obj = entry_encode(listing, &entries[i], &out);
		if (json_object_to_json_string_length(obj,
		    JSON_C_TO_STRING_PLAIN, &len) != NULL)
			bytes += len;
		json_object_array_add(array, obj);
		shown++;
	}
	*ret_more = i < n;
	entries_free(entries, n);
	return array;
}

/*
 * What a reload keeps of the handed-over locks, oldest first: an array
 * the caller frees, its strings borrowed.  0 if there are none or
 * memory ran out.
 */
size_t
listing_handoffs_export(struct listing *listing, struct snap_handoff **ret)
{
	struct snap_handoff	*out;
	struct handoff		*h;
	size_t			 n = 0;

	*ret = NULL;
	if (listing->nhandoffs == 0 || (out = calloc(listing->nhandoffs,
	    sizeof *out)) == NULL)
		return 0;
	TAILQ_FOREACH(h, &listing->handoffs, entry) {
		out[n].key = h->key;
		out[n].name = h->name;
		out[n].dev = h->dev;
		out[n].ino = h->ino;
		out[n].pid = h->holder.pid;
		out[n].uid = h->holder.uid;
		out[n].gid = h->holder.gid;
		out[n].client = (char *)h->holder.client;
		out[n].owner = (char *)h->holder.owner;
		out[n].mode = h->holder.mode;
		out[n].since = h->holder.since;
		out[n].token = h->holder.token;
		out[n].parent = h->parent;
		n++;
	}
	*ret = out;
	return n;
}

/* Note again a handed-over lock a reload kept. */
void
listing_handoff_restore(struct listing *listing, const struct snap_handoff *s)
{
	struct handoff_info	 info;

	if (s->key == NULL || s->name == NULL || s->client == NULL ||
	    s->owner == NULL)
		return;
	memset(&info, 0, sizeof info);
	info.key = s->key;
	info.name = s->name;
	info.dev = (dev_t)s->dev;
	info.ino = (ino_t)s->ino;
	info.holder.pid = s->pid;
	info.holder.uid = s->uid;
	info.holder.gid = s->gid;
	info.holder.client = s->client;
	info.holder.owner = s->owner;
	info.holder.mode = s->mode;
	info.holder.since = s->since;
	info.holder.token = s->token;
	info.parent = s->parent;
	listing_handoff_add(listing, &info);
}

/*
 * For metrics: how many flocks processes outside the broker hold on the
 * files of the table's locks, and how many handed-over locks are still
 * held (ended ones pruned, as list prunes them).  /proc/locks is read
 * only when there is a lock to look at.
 */
void
listing_outside_counts(struct listing *listing, size_t *ret_outside,
    size_t *ret_handoffs)
{
	struct outside	 out;
	struct lock	*lock;
	size_t		 n = 0;
	dev_t		 dev;
	ino_t		 ino;

	if (locktab_first(listing->locktab) == NULL &&
	    TAILQ_EMPTY(&listing->handoffs)) {
		*ret_outside = 0;
		*ret_handoffs = 0;
		return;
	}
	outside_read(listing, &out, NULL, 0, 1);
	handoffs_prune_all(listing, &out, NULL);
	for (lock = locktab_first(listing->locktab); lock != NULL;
	    lock = locktab_next(lock)) {
		lock_file_id(lock, &dev, &ino);
		n += outside_count(out.holders, out.n, dev, ino, 0);
	}
	*ret_outside = n;
	*ret_handoffs = listing->nhandoffs;
}
