/*
 * Seeing holders outside the broker: the flock(2) locks in /proc/locks,
 * matched to lock files by device and inode, the way util-linux lslocks
 * does.  The daemon's own flocks (its pid) are its clients': they are kept
 * apart, marked own, to count the descriptor-form locks it handed over.
 */

#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"

#define PROC_LOCKS	"/proc/locks"
#define OUTSIDE_MAX	65536	/* entries kept at most, bounding memory */
#define OUTSIDE_READ	65536	/* bytes asked of each read(2) */
#define OUTSIDE_MAX_BYTES (64 * 1024 * 1024)	/* of /proc/locks read */
#define OUTSIDE_FRESH_SECS 0.1	/* a scan serves all requests this long */
#define OUTSIDE_REREADS	7	/* more reads of one scan's time, at most */

/* Parse one /proc/locks line; 1 if it is a granted FLOCK. */
static int
outside_parse(const char *line, struct outside_holder *ret)
{
	char		 type[16], access[16], rw[16];
	unsigned int	 major, minor;
	unsigned long	 ino;
	long		 pid;

	/* "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF"; waiters have "->". */
	if ((line = strchr(line, ':')) == NULL || strstr(line, "->") != NULL)
		return 0;
	if (sscanf(line + 1, "%15s %15s %15s %ld %x:%x:%lu", type, access, rw,
	    &pid, &major, &minor, &ino) != 7)
		return 0;
	if (strcmp(type, "FLOCK") != 0 || pid <= 0)
		return 0;
	ret->pid = (pid_t)pid;
	ret->dev = makedev(major, minor);
	ret->ino = (ino_t)ino;
	ret->mode = strcmp(rw, "READ") == 0 ? PROTO_SHARED : PROTO_EXCLUSIVE;
	return 1;
}

/*
 * A process may name itself with any bytes, but what the daemon sends
 * must be UTF-8: if the name is not, its bytes past ASCII become '?'.
 */
void
utf8_clean(char *name)
{
	char	*p;

	if (proto_utf8_valid(name, strlen(name)))
		return;
	for (p = name; *p != '\0'; p++) {
		if ((unsigned char)*p >= 0x80)
			*p = '?';
	}
}

/*
 * Read a small /proc file (one read is all the kernel gives at once) into
 * buf, NUL-terminated; the length, or -1.
 */
ssize_t
proc_read(const char *path, char *buf, size_t size)
{
	ssize_t	 n;
	int	 fd;

	if (size == 0 || (fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return -1;
	n = read(fd, buf, size - 1);
	close(fd);
	if (n < 0)
		return -1;
	buf[n] = '\0';
	return n;
}

/*
 * The path the kernel gives descriptor fd, NUL-terminated in buf, its
 * bytes as they are; the length, or -1.
 */
ssize_t
fd_path(int fd, char *buf, size_t size)
{
	char	 link[64];
	ssize_t	 n;

	snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
	if (size < 2 || (n = readlink(link, buf, size - 1)) <= 0)
		return -1;
	buf[n] = '\0';
	return n;
}

/* Read the command name of pid, as ps shows it ("?" if it is gone). */
static void
outside_command(pid_t pid, char *buf, size_t size)
{
	char	 path[64];
	FILE	*fp;

	snprintf(path, sizeof path, "/proc/%ld/comm", (long)pid);
	snprintf(buf, size, "?");
	if ((fp = fopen(path, "re")) == NULL)
		return;
	if (fgets(buf, (int)size, fp) != NULL)
		buf[strcspn(buf, "\n")] = '\0';
	fclose(fp);
	utf8_clean(buf);
}

/* The user a process runs as (its /proc directory's owner), if seen. */
static uid_t
outside_uid(pid_t pid)
{
	struct stat	 sb;
	char		 path[64];

	snprintf(path, sizeof path, "/proc/%ld", (long)pid);
	return stat(path, &sb) == 0 ? sb.st_uid : PROTO_NO_UID;
}

/*
 * Read all of /proc/locks with large read(2)s: stdio's 1 KiB reads let the
 * kernel's view shift between them far more often.  Returns a
 * NUL-terminated buffer to free, or NULL.
 */
static char *
outside_slurp(void)
{
	char	*buf = NULL, *grown;
	size_t	 len = 0, cap = 0;
	ssize_t	 n;
	int	 fd;

	if ((fd = open(PROC_LOCKS, O_RDONLY | O_CLOEXEC)) == -1)
		return NULL;
	for (;;) {
		if (cap - len < OUTSIDE_READ + 1) {
			if (cap >= OUTSIDE_MAX_BYTES ||
			    (grown = realloc(buf, cap + OUTSIDE_READ + 1)) ==
			    NULL)
				break;
			buf = grown;
			cap += OUTSIDE_READ + 1;
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	if (buf != NULL)
		buf[len] = '\0';
	return buf;
}

/*
 * The next granted FLOCK of /proc/locks' text at *cursor, into *ret (all
 * else zeroed), moving *cursor past its line (the text is cut at each
 * line end); 0 at the end.
 */
static int
outside_next(char **cursor, struct outside_holder *ret)
{
	char	*line, *next;

	for (line = *cursor; line != NULL; line = next) {
		if ((next = strchr(line, '\n')) != NULL)
			*next++ = '\0';
		memset(ret, 0, sizeof *ret);
		if (outside_parse(line, ret)) {
			*cursor = next;
			return 1;
		}
	}
	*cursor = NULL;
	return 0;
}

/*
 * How many flocks /proc/locks shows on file dev:ino right now, whoever
 * holds them, read afresh (an upgrade must not trust a cached scan);
 * -1 if it cannot be read.
 */
ssize_t
outside_flocks_on(dev_t dev, ino_t ino)
{
	struct outside_holder	 h;
	char			*text, *line;
	ssize_t			 n = 0;

	if ((text = outside_slurp()) == NULL)
		return -1;
	for (line = text; outside_next(&line, &h); ) {
		if (h.dev == dev && h.ino == ino)
			n++;
	}
	free(text);
	return n;
}

/* Order holders by file, then pid and mode, so one file's are adjacent. */
static int
outside_cmp(const void *a, const void *b)
{
	const struct outside_holder	*x = a, *y = b;

	if (x->dev != y->dev)
		return x->dev < y->dev ? -1 : 1;
	if (x->ino != y->ino)
		return x->ino < y->ino ? -1 : 1;
	if (x->pid != y->pid)
		return x->pid < y->pid ? -1 : 1;
	return (int)x->mode - (int)y->mode;
}

/* Sort holders and drop repeats (the kernel's view can repeat lines). */
static size_t
outside_sort_unique(struct outside_holder *holders, size_t n)
{
	size_t	 i, kept = 0;

	if (n == 0)
		return 0;
	qsort(holders, n, sizeof *holders, outside_cmp);
	for (i = 1; i < n; i++) {
		if (outside_cmp(&holders[kept], &holders[i]) != 0)
			holders[++kept] = holders[i];
	}
	return kept + 1;
}

struct outside_cache;
static int	outside_former(const struct outside_cache *, pid_t);

/*
 * Collect the flocks held, those of self marked own, sorted by file.  Returns the count and an array to free (NULL when
 * none or on error).  /proc/locks is only consistent a page at a time, so
 * a busy machine can still hide a holder; callers that know a lock is
 * held outside retry.  Command names are read later, for the holders
 * shown (outside_encode), not for every flock on the machine.
 */
static size_t
outside_scan(pid_t self, const struct outside_cache *cache,
    struct outside_holder **ret)
{
	struct outside_holder	*holders = NULL, *grown, h;
	size_t			 n = 0, cap = 0;
	char			*text, *line;

	*ret = NULL;
	if ((text = outside_slurp()) == NULL)
		return 0;
	for (line = text; n < OUTSIDE_MAX && outside_next(&line, &h); ) {
		/* A restart's flocks still show the pid that took them. */
		h.own = h.pid == self || outside_former(cache, h.pid);
		if (n == cap) {
			cap = cap == 0 ? 16 : cap * 2;
			grown = reallocarray(holders, cap, sizeof *holders);
			if (grown == NULL)
				break;
			holders = grown;
		}
		holders[n++] = h;
	}
	free(text);
	*ret = holders;
	return outside_sort_unique(holders, n);
}

/*
 * One scan, shared by every request within OUTSIDE_FRESH_SECS of it: any
 * local user can make /proc/locks long, so however many requests ask, it
 * is read at most 1 + OUTSIDE_REREADS times in that time.
 */
struct outside_cache {
	struct outside_holder	*holders;
	size_t			 n;
	double			 read_at;	/* monotonic; < 0: never */
	int			 rereads;	/* left until the next read */
	pid_t			 former[SNAP_FORMER_MAX]; /* earlier daemons' */
	size_t			 nformer;
};

struct outside_cache *
outside_cache_new(void)
{
	struct outside_cache	*cache;

	if ((cache = calloc(1, sizeof *cache)) == NULL)
		return NULL;
	cache->read_at = -1;
	return cache;
}

void
outside_cache_free(struct outside_cache *cache)
{
	if (cache == NULL)
		return;
	free(cache->holders);
	free(cache);
}

/* Replace the cached scan with a new one. */
static void
outside_cache_read(struct outside_cache *cache)
{
	free(cache->holders);
	cache->n = outside_scan(getpid(), cache, &cache->holders);
	cache->read_at = clock_monotonic();
}

/*
 * The flocks on the machine, sorted by file, at most OUTSIDE_FRESH_SECS
 * old (when *ret_read_at, monotonic, says); the array belongs to the
 * cache and lives until the next call.  With reread set (the caller
 * knows a holder the scan missed, as /proc/locks is consistent only a
 * page at a time), read again if this scan's rereads are not used up.
 */
size_t
outside_get(struct outside_cache *cache, int reread,
    struct outside_holder **ret, double *ret_read_at)
{
	if (cache->read_at < 0 ||
	    clock_monotonic() - cache->read_at >= OUTSIDE_FRESH_SECS) {
		outside_cache_read(cache);
		cache->rereads = OUTSIDE_REREADS;
	} else if (reread && cache->rereads > 0) {
		outside_cache_read(cache);
		cache->rereads--;
	}
	*ret = cache->holders;
	*ret_read_at = cache->read_at;
	return cache->n;
}

/* The first of the n sorted flocks on file dev:ino, or NULL. */
struct outside_holder *
outside_find(struct outside_holder *holders, size_t n, dev_t dev, ino_t ino)
{
	size_t	 lo = 0, hi = n, mid;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (holders[mid].dev < dev ||
		    (holders[mid].dev == dev && holders[mid].ino < ino))
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && holders[lo].dev == dev && holders[lo].ino == ino ?
	    &holders[lo] : NULL;
}

/* How many of the n sorted flocks on dev:ino are own, or not own. */
size_t
outside_count(struct outside_holder *holders, size_t n, dev_t dev,
    ino_t ino, int own)
{
	struct outside_holder	*h, *end = holders + n;
	size_t			 count = 0;

	if ((h = outside_find(holders, n, dev, ino)) == NULL)
		return 0;
	for (; h < end && h->dev == dev && h->ino == ino; h++)
		count += !h->own == !own;
	return count;
}

/* Describe an outside holder as the protocol shows it. */
struct json_object *
outside_encode(struct outside_holder *h)
{
	struct proto_holder	 ph;

	/* Once per reading of /proc/locks, however many lists show it. */
	if (h->command[0] == '\0') {
		outside_command(h->pid, h->command, sizeof h->command);
		h->uid = outside_uid(h->pid);
	}
	memset(&ph, 0, sizeof ph);
	ph.external = 1;
	ph.pid = h->pid;
	ph.uid = h->uid;
	ph.mode = h->mode;
	ph.command = h->command;
	return proto_holder_encode(&ph);
}

/*
 * Count the flocks of pid, the daemon this one was restarted from, as
 * the daemon's own: the descriptors it handed over keep its pid in
 * /proc/locks.
 */
void
outside_set_former(struct outside_cache *cache, const int32_t *pids,
    size_t n)
{
	size_t	 i;

	cache->nformer = 0;
	for (i = 0; i < n && i < SNAP_FORMER_MAX; i++)
		if (pids[i] > 0 && pids[i] != getpid())
			cache->former[cache->nformer++] = pids[i];
}

/* Whether pid is one of the daemons this one was restarted from. */
static int
outside_former(const struct outside_cache *cache, pid_t pid)
{
	size_t	 i;

	for (i = 0; i < cache->nformer; i++)
		if (cache->former[i] == pid)
			return 1;
	return 0;
}
