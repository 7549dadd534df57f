/*
 * The state handed over across a reload or a restart, and its format:
 * the one place that knows it (daemon.h has the plain data).
 *
 * Format, version 3, all integers little-endian:
 *   "LOCKSDST" magic, u32 version, u32 header length (16 so far);
 *   then sections, each a u32 tag and a u32 byte length, so that a
 *   reader skips what it does not know: header fields, listeners,
 *   sessions, locks, handoffs, and (version 2) the contended section
 *   after the sessions: the acquires that asked for contended events,
 *   as (session, acquire) indexes with when each was last told.  A
 *   version 1 reader skips it, so a downgrade only loses the asking;
 *   and (version 3) the detecting section after it: the acquires that
 *   asked for deadlock detection, as (session, acquire) indexes, which
 *   older readers skip as well.  Every count is checked against the bytes
 *   left, so a cut or corrupt state ends the section it is in, never
 *   the reader.  A string is a u32 length and its bytes; an fd is an
 *   i32, -1 for none.
 *
 * A reader keeps every section it read whole.  Bump STATE_VERSION
 * (daemon.h) on any change; a newer version's sections with the same
 * tags must stay readable by this reader, or take new tags.
 */

#include <sys/mman.h>
#include <sys/stat.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"

#define STATE_MAGIC	"LOCKSDST"
#define STATE_MAX	(1UL << 30)	/* bytes a reader takes at most */

enum state_tag {
	TAG_HEADER = 1,
	TAG_LISTENERS,
	TAG_SESSIONS,
	TAG_LOCKS,
	TAG_HANDOFFS,
	TAG_CONTENDED,		/* version 2 */
	TAG_DETECTING		/* version 3 */
};

/* A growing output buffer; failed is set once memory runs out. */
struct wbuf {
	char		*data;
	size_t		 len;
	size_t		 cap;
	int		 failed;
};

/* A bounded input cursor; bad is set on the first overrun. */
struct rbuf {
	const char	*data;
	size_t		 len;
	size_t		 at;
	int		 bad;
};

static void
put(struct wbuf *w, const void *p, size_t n)
{
	char	*grown;
	size_t	 cap;

	if (w->failed || n == 0)
		return;
	if (w->len + n > w->cap) {
		cap = w->cap == 0 ? 4096 : w->cap;
		while (cap < w->len + n)
			cap *= 2;
		if ((grown = realloc(w->data, cap)) == NULL) {
			w->failed = 1;
			return;
		}
		w->data = grown;
		w->cap = cap;
	}
	memcpy(w->data + w->len, p, n);
	w->len += n;
}

static void
put_u32(struct wbuf *w, uint32_t v)
{
	unsigned char	 b[4];
	int		 i;

	for (i = 0; i < 4; i++)
		b[i] = (unsigned char)(v >> (8 * i));
	put(w, b, sizeof b);
}

static void
put_u64(struct wbuf *w, uint64_t v)
{
	put_u32(w, (uint32_t)v);
	put_u32(w, (uint32_t)(v >> 32));
}

static void
put_f64(struct wbuf *w, double d)
{
	uint64_t	 v;

	memcpy(&v, &d, sizeof v);
	put_u64(w, v);
}

static void
put_bytes(struct wbuf *w, const char *p, size_t n)
{
	put_u32(w, (uint32_t)n);
	put(w, p, n);
}

static void
put_str(struct wbuf *w, const char *s)
{
	put_bytes(w, s != NULL ? s : "", s != NULL ? strlen(s) : 0);
}

/* Start a section; returns where its length goes, for section_end. */
static size_t
section_begin(struct wbuf *w, enum state_tag tag)
{
	size_t	 at;

	put_u32(w, tag);
	at = w->len;
	put_u32(w, 0);
	return at;
}

static void
section_end(struct wbuf *w, size_t at)
{
	uint32_t	 n = (uint32_t)(w->len - at - 4);
	int		 i;

	if (w->failed)
		return;
	for (i = 0; i < 4; i++)
		w->data[at + i] = (char)(n >> (8 * i));
}

static const void *
get(struct rbuf *r, size_t n)
{
	const void	*p;

	if (r->bad || r->len - r->at < n) {
		r->bad = 1;
		return NULL;
	}
	p = r->data + r->at;
	r->at += n;
	return p;
}

static uint32_t
get_u32(struct rbuf *r)
{
	const unsigned char	*b = get(r, 4);

	if (b == NULL)
		return 0;
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
	    (uint32_t)b[3] << 24;
}

static uint64_t
get_u64(struct rbuf *r)
{
	uint64_t	 lo = get_u32(r);

	return lo | (uint64_t)get_u32(r) << 32;
}

static double
get_f64(struct rbuf *r)
{
	uint64_t	 v = get_u64(r);
	double		 d;

	memcpy(&d, &v, sizeof d);
	return d;
}

static int
get_fd(struct rbuf *r)
{
	int32_t	 v = (int32_t)get_u32(r);

	return r->bad || v < 0 ? -1 : v;
}

/* A string's bytes, NUL-terminated in a new allocation; NULL if bad. */
static char *
get_bytes(struct rbuf *r, uint32_t *ret_len)
{
	uint32_t	 n = get_u32(r);
	const char	*p = get(r, n);
	char		*s;

	if (p == NULL || (s = malloc((size_t)n + 1)) == NULL) {
		r->bad = 1;
		return NULL;
	}
	memcpy(s, p, n);
	s[n] = '\0';
	if (ret_len != NULL)
		*ret_len = n;
	return s;
}

static char *
get_str(struct rbuf *r)
{
	return get_bytes(r, NULL);
}

/* A count of items of at least min bytes each that the rest can hold. */
static uint32_t
get_count(struct rbuf *r, size_t min, size_t max)
{
	uint32_t	 n = get_u32(r);

	if (r->bad || n > (r->len - r->at) / min || n > max) {
		r->bad = 1;
		return 0;
	}
	return n;
}

static void
write_header(struct wbuf *w, const struct snap *s)
{
	size_t		 at = section_begin(w, TAG_HEADER);
	uint32_t	 i;

	put_u32(w, (uint32_t)s->pid);
	put_u32(w, s->nformer);
	put_u32(w, (uint32_t)s->claim_fd);
	put_u32(w, (uint32_t)s->lock_dirfd);
	put_u32(w, s->own_socket);
	put_f64(w, s->started);
	for (i = 0; i < s->nformer && i < SNAP_FORMER_MAX; i++)
		put_u32(w, (uint32_t)s->former[i]);
	section_end(w, at);
}

static void
write_listeners(struct wbuf *w, const struct snap *s)
{
	size_t		 at = section_begin(w, TAG_LISTENERS);
	uint32_t	 i;

	put_u32(w, s->nlisteners);
	for (i = 0; i < s->nlisteners; i++)
		put_u32(w, (uint32_t)s->listeners[i]);
	section_end(w, at);
}

static void
write_acquire(struct wbuf *w, const struct snap_acquire *a)
{
	put_str(w, a->target);
	put_str(w, a->owner);
	put_str(w, a->id_text);
	put_u32(w, a->held);
	put_u32(w, a->mode);
	put_u64(w, (uint64_t)a->token);
	put_f64(w, a->since);
	put_f64(w, a->started);
	put_f64(w, a->timeout_at);
	put_f64(w, a->notify_at);
	put_u32(w, a->by_path);
	put_u64(w, a->path_dev);
	put_u64(w, a->path_ino);
	put_u32(w, (uint32_t)a->handoff_fd);
}

static void
write_session(struct wbuf *w, const struct snap_session *ss)
{
	uint32_t	 i, j;

	put_u32(w, (uint32_t)ss->fd);
	put_u64(w, ss->id.dev);
	put_u64(w, ss->id.ino);
	put_u32(w, (uint32_t)ss->peer.pid);
	put_u32(w, (uint32_t)ss->peer.uid);
	put_u32(w, (uint32_t)ss->peer.gid);
	put_str(w, ss->label);
	put_u32(w, ss->counted);
	put_u32(w, ss->closing);
	put_bytes(w, ss->partial, ss->partial_len);
	put_bytes(w, ss->out, ss->out_len);
	put_u32(w, ss->ngroups);
	for (i = 0; i < ss->ngroups; i++) {
		put_u32(w, ss->groups[i].n);
		put_u32(w, ss->groups[i].at);
		for (j = 0; j < PROTO_MAX_FDS; j++)
			put_u32(w, (uint32_t)(j < ss->groups[i].n ?
			    ss->groups[i].fd[j] : -1));
	}
	put_u32(w, ss->nacquires);
	for (i = 0; i < ss->nacquires; i++)
		write_acquire(w, &ss->acquires[i]);
}

static void
write_sessions(struct wbuf *w, const struct snap *s)
{
	size_t		 at = section_begin(w, TAG_SESSIONS);
	uint32_t	 i;

	put_u32(w, s->nsessions);
	for (i = 0; i < s->nsessions; i++)
		write_session(w, &s->sessions[i]);
	section_end(w, at);
}

static void
write_locks(struct wbuf *w, const struct snap *s)
{
	size_t		 at = section_begin(w, TAG_LOCKS);
	uint32_t	 i, j;

	put_u32(w, s->nlocks);
	for (i = 0; i < s->nlocks; i++) {
		put_str(w, s->locks[i].name);
		put_u32(w, (uint32_t)s->locks[i].fd);
		put_u64(w, s->locks[i].id.dev);
		put_u64(w, s->locks[i].id.ino);
		put_u32(w, s->locks[i].flock);
		put_u32(w, s->locks[i].nholders);
		put_u32(w, s->locks[i].nreqs);
		for (j = 0; j < s->locks[i].nreqs; j++) {
			put_u32(w, s->locks[i].reqs[j].session);
			put_u32(w, s->locks[i].reqs[j].acquire);
		}
	}
	section_end(w, at);
}

/* The acquires that asked for contended events: a section of its own. */
static void
write_contended(struct wbuf *w, const struct snap *s)
{
	size_t		 at;
	uint32_t	 i, j, n = 0;

	for (i = 0; i < s->nsessions; i++)
		for (j = 0; j < s->sessions[i].nacquires; j++)
			n += s->sessions[i].acquires[j].notify_contended != 0;
	if (n == 0)
		return;
	at = section_begin(w, TAG_CONTENDED);
	put_u32(w, n);
	for (i = 0; i < s->nsessions; i++) {
		for (j = 0; j < s->sessions[i].nacquires; j++) {
			if (!s->sessions[i].acquires[j].notify_contended)
				continue;
			put_u32(w, i);
			put_u32(w, j);
			put_f64(w, s->sessions[i].acquires[j].told_at);
		}
	}
	section_end(w, at);
}

/* The acquires that asked for deadlock detection: a section of its own. */
static void
write_detecting(struct wbuf *w, const struct snap *s)
{
	size_t		 at;
	uint32_t	 i, j, n = 0;

	for (i = 0; i < s->nsessions; i++)
		for (j = 0; j < s->sessions[i].nacquires; j++)
			n += s->sessions[i].acquires[j].detect_deadlock != 0;
	if (n == 0)
		return;
	at = section_begin(w, TAG_DETECTING);
	put_u32(w, n);
	for (i = 0; i < s->nsessions; i++) {
		for (j = 0; j < s->sessions[i].nacquires; j++) {
			if (!s->sessions[i].acquires[j].detect_deadlock)
				continue;
			put_u32(w, i);
			put_u32(w, j);
		}
	}
	section_end(w, at);
}

static void
write_handoffs(struct wbuf *w, const struct snap *s)
{
	size_t			 at = section_begin(w, TAG_HANDOFFS);
	const struct snap_handoff *h;
	uint32_t		 i;

	put_u32(w, s->nhandoffs);
	for (i = 0; i < s->nhandoffs; i++) {
		h = &s->handoffs[i];
		put_str(w, h->key);
		put_str(w, h->name);
		put_u64(w, h->dev);
		put_u64(w, h->ino);
		put_u32(w, (uint32_t)h->pid);
		put_u32(w, h->uid);
		put_u32(w, h->gid);
		put_str(w, h->client);
		put_str(w, h->owner);
		put_u32(w, h->mode);
		put_f64(w, h->since);
		put_u64(w, (uint64_t)h->token);
		put_u32(w, (uint32_t)h->parent);
	}
	section_end(w, at);
}

/* Write all of buf to fd, a memfd, which takes it in one call or fails. */
static int
write_all(int fd, const char *buf, size_t len)
{
	ssize_t	 n = write(fd, buf, len);

	if (n == -1)
		return -errno;
	return (size_t)n == len ? 0 : -EIO;
}

/* Write the state to fd, from its start: 0, or -errno. */
int
state_write(int fd, const struct snap *s)
{
	struct wbuf	 w = { 0 };
	int		 rc;

	put(&w, STATE_MAGIC, 8);
	put_u32(&w, STATE_VERSION);
	put_u32(&w, 16);
	write_header(&w, s);
	write_listeners(&w, s);
	write_sessions(&w, s);
	write_contended(&w, s);
	write_detecting(&w, s);
	write_locks(&w, s);
	write_handoffs(&w, s);
	rc = w.failed ? -ENOMEM : write_all(fd, w.data, w.len);
	free(w.data);
	return rc;
}

/* A memfd holding the state, at offset 0, kept across exec; or -errno. */
int
state_memfd(const struct snap *s)
{
	int	 fd, rc;

	if ((fd = memfd_create("locksd-state", MFD_CLOEXEC)) == -1)
		return -errno;
	if ((rc = state_write(fd, s)) != 0 || lseek(fd, 0, SEEK_SET) == -1) {
		rc = rc != 0 ? rc : -errno;
		close(fd);
		return rc;
	}
	return fd;
}

static void
read_header(struct rbuf *r, struct snap *s)
{
	uint32_t	 i;

	s->pid = (int32_t)get_u32(r);
	s->nformer = get_u32(r);
	s->claim_fd = get_fd(r);
	s->lock_dirfd = get_fd(r);
	s->own_socket = get_u32(r) != 0;
	s->started = get_f64(r);
	if (s->nformer > SNAP_FORMER_MAX)
		s->nformer = SNAP_FORMER_MAX;
	for (i = 0; i < s->nformer; i++)
		s->former[i] = (int32_t)get_u32(r);
	if (r->bad)
		s->nformer = 0;
}

static void
read_listeners(struct rbuf *r, struct snap *s)
{
	uint32_t	 i, n = get_count(r, 4, 64);

	if (n == 0 || (s->listeners = calloc(n, sizeof(int))) == NULL)
		return;
	for (i = 0; i < n && !r->bad; i++)
		s->listeners[i] = get_fd(r);
	s->nlisteners = r->bad ? 0 : n;
}

static void
read_acquire(struct rbuf *r, struct snap_acquire *a)
{
	a->target = get_str(r);
	a->owner = get_str(r);
	a->id_text = get_str(r);
	a->held = get_u32(r) != 0;
	a->mode = get_u32(r) == PROTO_SHARED ? PROTO_SHARED : PROTO_EXCLUSIVE;
	a->token = (int64_t)get_u64(r);
	a->since = get_f64(r);
	a->started = get_f64(r);
	a->timeout_at = get_f64(r);
	a->notify_at = get_f64(r);
	a->by_path = get_u32(r) != 0;
	a->path_dev = get_u64(r);
	a->path_ino = get_u64(r);
	a->handoff_fd = get_fd(r);
	a->had_handoff = a->handoff_fd >= 0;	/* even if it does not come */
}

static void
read_groups(struct rbuf *r, struct snap_session *ss)
{
	uint32_t	 i, j, n = get_count(r, 8, SNAP_FD_GROUPS);

	for (i = 0; i < n && !r->bad; i++) {
		ss->groups[i].n = get_u32(r);
		ss->groups[i].at = get_u32(r);
		for (j = 0; j < PROTO_MAX_FDS; j++)
			ss->groups[i].fd[j] = get_fd(r);
		/* Past PROTO_MAX_FDS, the fds beyond were closed already. */
		if (ss->groups[i].n > PROTO_MAX_FDS + 1)
			ss->groups[i].n = PROTO_MAX_FDS + 1;
		ss->ngroups = i + 1;
	}
}

/* One session; fds it names stay valid in it even if it is cut short. */
static void
read_session(struct rbuf *r, struct snap_session *ss)
{
	uint32_t	 i, n;

	ss->fd = get_fd(r);
	ss->id.dev = get_u64(r);
	ss->id.ino = get_u64(r);
	ss->peer.pid = (pid_t)get_u32(r);
	ss->peer.uid = (uid_t)get_u32(r);
	ss->peer.gid = (gid_t)get_u32(r);
	ss->label = get_str(r);
	ss->counted = get_u32(r) != 0;
	ss->closing = get_u32(r) != 0;
	ss->partial = get_bytes(r, &ss->partial_len);
	ss->out = get_bytes(r, &ss->out_len);
	read_groups(r, ss);
	n = get_count(r, 64, UINT32_MAX);
	if (n > 0 && (ss->acquires = calloc(n, sizeof *ss->acquires)) ==
	    NULL) {
		r->bad = 1;
		return;
	}
	for (i = 0; i < n; i++)
		ss->acquires[i].handoff_fd = -1;
	ss->nacquires = n;
	for (i = 0; i < n && !r->bad; i++)
		read_acquire(r, &ss->acquires[i]);
}

static void
read_sessions(struct rbuf *r, struct snap *s)
{
	uint32_t	 i, n = get_count(r, 48, UINT32_MAX);

	if (n == 0 || (s->sessions = calloc(n, sizeof *s->sessions)) == NULL)
		return;
	for (i = 0; i < n && !r->bad; i++) {
		s->sessions[i].fd = -1;
		read_session(r, &s->sessions[i]);
		s->nsessions = i + 1;
	}
}

static void
read_lock(struct rbuf *r, struct snap_lock *l)
{
	uint32_t	 i;

	l->name = get_str(r);
	l->fd = get_fd(r);
	l->id.dev = get_u64(r);
	l->id.ino = get_u64(r);
	l->flock = get_u32(r);
	l->nholders = get_u32(r);
	l->nreqs = get_count(r, 8, UINT32_MAX);
	if (l->nreqs > 0 && (l->reqs = calloc(l->nreqs,
	    sizeof *l->reqs)) == NULL)
		l->nreqs = 0;
	for (i = 0; i < l->nreqs; i++) {
		l->reqs[i].session = get_u32(r);
		l->reqs[i].acquire = get_u32(r);
	}
	if (l->nholders > l->nreqs || l->flock > 2)
		r->bad = 1;
}

static void
read_locks(struct rbuf *r, struct snap *s)
{
	uint32_t	 i, n = get_count(r, 36, UINT32_MAX);

	if (n == 0 || (s->locks = calloc(n, sizeof *s->locks)) == NULL)
		return;
	for (i = 0; i < n && !r->bad; i++) {
		s->locks[i].fd = -1;
		read_lock(r, &s->locks[i]);
		s->nlocks = i + 1;
	}
	/* A lock cut short keeps its fd, to be closed, but no requests. */
	if (r->bad && s->nlocks > 0)
		s->locks[s->nlocks - 1].nreqs = 0;
}

static void
read_handoffs(struct rbuf *r, struct snap *s)
{
	struct snap_handoff	*h;
	uint32_t		 i, n = get_count(r, 64, UINT32_MAX);

	if (n == 0 || (s->handoffs = calloc(n, sizeof *s->handoffs)) == NULL)
		return;
	for (i = 0; i < n && !r->bad; i++) {
		h = &s->handoffs[i];
		h->key = get_str(r);
		h->name = get_str(r);
		h->dev = get_u64(r);
		h->ino = get_u64(r);
		h->pid = (int32_t)get_u32(r);
		h->uid = get_u32(r);
		h->gid = get_u32(r);
		h->client = get_str(r);
		h->owner = get_str(r);
		h->mode = get_u32(r) == PROTO_SHARED ? PROTO_SHARED :
		    PROTO_EXCLUSIVE;
		h->since = get_f64(r);
		h->token = (int64_t)get_u64(r);
		h->parent = (int32_t)get_u32(r);
		if (!r->bad)
			s->nhandoffs = i + 1;
	}
}

/*
 * The contended section: flags on acquires of the sessions read before
 * it; an index past them is ignored.
 */
static void
read_contended(struct rbuf *r, struct snap *s)
{
	struct snap_acquire	*a;
	uint32_t		 i, si, ai, n = get_count(r, 16, UINT32_MAX);
	double			 told_at;

	for (i = 0; i < n && !r->bad; i++) {
		si = get_u32(r);
		ai = get_u32(r);
		told_at = get_f64(r);
		if (r->bad || si >= s->nsessions ||
		    ai >= s->sessions[si].nacquires)
			continue;
		a = &s->sessions[si].acquires[ai];
		a->notify_contended = 1;
		a->told_at = told_at;
	}
}

/*
 * The detecting section: flags on acquires of the sessions read before
 * it; an index past them is ignored.
 */
static void
read_detecting(struct rbuf *r, struct snap *s)
{
	uint32_t	 i, si, ai, n = get_count(r, 8, UINT32_MAX);

	for (i = 0; i < n && !r->bad; i++) {
		si = get_u32(r);
		ai = get_u32(r);
		if (r->bad || si >= s->nsessions ||
		    ai >= s->sessions[si].nacquires)
			continue;
		s->sessions[si].acquires[ai].detect_deadlock = 1;
	}
}

/* Read one section into s; -1 once the sections end or go bad. */
static int
read_section(struct rbuf *r, struct snap *s)
{
	struct rbuf	 sec = { 0 };
	uint32_t	 tag, len;

	if (r->at == r->len)
		return -1;
	tag = get_u32(r);
	len = get_u32(r);
	if ((sec.data = get(r, len)) == NULL)
		return -1;
	sec.len = len;
	switch (tag) {
	case TAG_HEADER:
		read_header(&sec, s);
		break;
	case TAG_LISTENERS:
		read_listeners(&sec, s);
		break;
	case TAG_SESSIONS:
		read_sessions(&sec, s);
		break;
	case TAG_LOCKS:
		read_locks(&sec, s);
		break;
	case TAG_HANDOFFS:
		read_handoffs(&sec, s);
		break;
	case TAG_CONTENDED:
		read_contended(&sec, s);
		break;
	case TAG_DETECTING:
		read_detecting(&sec, s);
		break;
	default:
		break;		/* a later version's: skipped */
	}
	return sec.bad ? -1 : 0;
}

/* The whole of fd's contents, up to STATE_MAX; NULL with errno. */
static char *
read_all(int fd, size_t *ret_len)
{
	struct stat	 sb;
	char		*buf;
	size_t		 got = 0;
	ssize_t		 n;

	if (fstat(fd, &sb) == -1)
		return NULL;
	if (sb.st_size < 0 || (uintmax_t)sb.st_size > STATE_MAX) {
		errno = EFBIG;
		return NULL;
	}
	if ((buf = malloc((size_t)sb.st_size + 1)) == NULL)
		return NULL;
	while (got < (size_t)sb.st_size) {
		n = pread(fd, buf + got, (size_t)sb.st_size - got, (off_t)got);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	*ret_len = got;
	return buf;
}

/*
 * Read a state from fd into s (zeroed first, all fds -1).  Returns 0 if
 * all of it was read, 1 if only part of it was (what was read is in s),
 * -1 if none: then why is in msg.
 */
int
state_read(int fd, struct snap *s, char *msg, size_t size)
{
	struct rbuf	 r = { 0 };
	char		*buf;
	size_t		 len = 0;
	uint32_t	 hlen;
	int		 partial = 0;

	memset(s, 0, sizeof *s);
	s->claim_fd = s->lock_dirfd = -1;
	s->owned = 1;
	if ((buf = read_all(fd, &len)) == NULL) {
		snprintf(msg, size, "cannot read the state: %s",
		    strerror(errno));
		return -1;
	}
	r.data = buf;
	r.len = len;
	if (len < 16 || memcmp(buf, STATE_MAGIC, 8) != 0) {
		snprintf(msg, size, "the state is not locksd's (no magic)");
		free(buf);
		return -1;
	}
	r.at = 8;
	s->version = get_u32(&r);
	hlen = get_u32(&r);
	if (hlen < 16 || hlen > len) {
		snprintf(msg, size, "the state's header is cut short");
		free(buf);
		return -1;
	}
	r.at = hlen;
	while (r.at < r.len) {
		if (read_section(&r, s) == -1) {
			partial = 1;
			break;
		}
	}
	free(buf);
	if (partial)
		snprintf(msg, size, "the state (version %u; this locksd "
		    "writes %d) is cut short or corrupt past byte %zu of %zu",
		    s->version, STATE_VERSION, r.at, len);
	return partial;
}

static void
free_session(struct snap_session *ss)
{
	uint32_t	 i;

	free(ss->label);
	free(ss->partial);
	free(ss->out);
	for (i = 0; i < ss->nacquires; i++) {
		free(ss->acquires[i].target);
		free(ss->acquires[i].owner);
		free(ss->acquires[i].id_text);
	}
}

/* Free what a snap holds (its fds are the caller's); accepts NULL. */
void
state_free(struct snap *s)
{
	uint32_t	 i;

	if (s == NULL)
		return;
	for (i = 0; i < s->nsessions; i++) {
		if (s->owned)
			free_session(&s->sessions[i]);
		free(s->sessions[i].acquires);
	}
	for (i = 0; i < s->nlocks; i++) {
		if (s->owned)
			free(s->locks[i].name);
		free(s->locks[i].reqs);
	}
	for (i = 0; s->owned && i < s->nhandoffs; i++) {
		free(s->handoffs[i].key);
		free(s->handoffs[i].name);
		free(s->handoffs[i].client);
		free(s->handoffs[i].owner);
	}
	free(s->listeners);
	free(s->sessions);
	free(s->locks);
	free(s->handoffs);
	memset(s, 0, sizeof *s);
}

/* Call cb on every fd field of the state that is set (>= 0). */
void
state_each_fd(struct snap *s, state_fd_cb cb, void *arg)
{
	struct snap_session	*ss;
	uint32_t		 i, j, k;

	if (s->claim_fd >= 0)
		cb(&s->claim_fd, arg);
	if (s->lock_dirfd >= 0)
		cb(&s->lock_dirfd, arg);
	for (i = 0; i < s->nlisteners; i++)
		if (s->listeners[i] >= 0)
			cb(&s->listeners[i], arg);
	for (i = 0; i < s->nsessions; i++) {
		ss = &s->sessions[i];
		if (ss->fd >= 0)
			cb(&ss->fd, arg);
		for (j = 0; j < ss->ngroups; j++)
			for (k = 0; k < PROTO_MAX_FDS &&
			    k < ss->groups[j].n; k++)
				if (ss->groups[j].fd[k] >= 0)
					cb(&ss->groups[j].fd[k], arg);
		for (j = 0; j < ss->nacquires; j++)
			if (ss->acquires[j].handoff_fd >= 0)
				cb(&ss->acquires[j].handoff_fd, arg);
	}
	for (i = 0; i < s->nlocks; i++)
		if (s->locks[i].fd >= 0)
			cb(&s->locks[i].fd, arg);
}
