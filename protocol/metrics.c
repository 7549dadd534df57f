/*
 * The metrics object of a status reply (PROTOCOL.md, "status") as the
 * text a scraper reads: Prometheus' text format 0.0.4, which promtool and
 * node_exporter's textfile collector take, or OpenMetrics 1.0.  It is the
 * one formatter: liblocks uses it for locks metrics, the daemon for
 * --metrics-file, so the two never differ.
 *
 * The object's shape is a table here: each key is one family, and each
 * level of objects under it is one label (its keys the label's values),
 * down to a number, or to a histogram object.  Keys the table does not
 * know (from a newer daemon) are left out; "busiest" is the one array,
 * the per-name series.
 */

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol.h"

#define PREFIX		"locksd_"
#define LABELS_MAX	3		/* per sample, le included */
#define DOUBLE_TEXT	32		/* "%.17g" of any double */

/* The upper bounds of every histogram's buckets, in seconds. */
const double proto_metrics_bounds[PROTO_METRICS_BUCKETS] = {
	0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60,
	300, 3600
};

enum family_type {
	FAMILY_GAUGE,
	FAMILY_COUNTER,			/* its key ends in _total */
	FAMILY_HISTOGRAM
};

/* One family: its key in the object, its labels by depth, its help. */
struct family {
	const char		*key;
	enum family_type	 type;
	const char		*labels[2];
	const char		*help;
};

static const struct family families[] = {
	{ "uptime_seconds", FAMILY_GAUGE, { NULL },
	    "Seconds since this locksd started (a reload starts anew)." },
	{ "connections", FAMILY_GAUGE, { NULL },
	    "Client connections open now." },
	{ "connections_accepted_total", FAMILY_COUNTER, { NULL },
	    "Client connections admitted." },
	{ "connections_refused_total", FAMILY_COUNTER, { "reason" },
	    "Connections refused or left waiting, by reason." },
	{ "locks_held", FAMILY_GAUGE, { "scope" },
	    "Grants held now, by scope." },
	{ "waiters", FAMILY_GAUGE, { "scope" },
	    "Requests waiting in a queue now, by scope." },
	{ "contended_locks", FAMILY_GAUGE, { "scope" },
	    "Locks with at least one waiter now, by scope." },
	{ "idle_locks", FAMILY_GAUGE, { NULL },
	    "Lock files kept open with nobody holding or awaiting them." },
	{ "grants_total", FAMILY_COUNTER, { "scope", "mode" },
	    "Grants, by scope and mode." },
	{ "timeouts_total", FAMILY_COUNTER, { "scope" },
	    "Acquires that ended in a timeout error, by scope." },
	{ "cancellations_total", FAMILY_COUNTER, { "reason" },
	    "Waits cancelled by a release or a closed connection." },
	{ "errors_total", FAMILY_COUNTER, { "code" },
	    "Error replies sent to clients, by protocol error code." },
	{ "wait_seconds", FAMILY_HISTOGRAM, { "scope" },
	    "Time from acquire to grant, for granted requests." },
	{ "hold_seconds", FAMILY_HISTOGRAM, { "scope" },
	    "Time from grant to release, for released grants." },
	{ "outside_holders", FAMILY_GAUGE, { NULL },
	    "Flocks held outside the broker on files of its open locks." },
	{ "outside_blocked_locks", FAMILY_GAUGE, { NULL },
	    "Locks whose next grant waits for a holder outside the broker." },
	{ "watch_threads", FAMILY_GAUGE, { NULL },
	    "Threads waiting in flock(2) on outside holders." },
	{ "handoffs", FAMILY_GAUGE, { NULL },
	    "Locks handed over to a client's own descriptor." },
	{ "throttle_events_total", FAMILY_COUNTER, { NULL },
	    "Times a connection's reading paused for its unread replies." },
	{ "throttled_connections", FAMILY_GAUGE, { NULL },
	    "Connections whose reading is paused for unread replies." },
	{ "throttled_bytes", FAMILY_GAUGE, { NULL },
	    "Reply bytes unread by paused connections." },
	{ "token_next", FAMILY_GAUGE, { NULL },
	    "The fencing token the next grant gets." },
	{ "token_ceiling", FAMILY_GAUGE, { NULL },
	    "The token ceiling saved on disk: no grant gets a token past it." },
	{ "token_headroom", FAMILY_GAUGE, { NULL },
	    "Tokens left under the saved ceiling." },
	{ "tokens_left", FAMILY_GAUGE, { NULL },
	    "Tokens left below 2^53, after which no grant is possible." },
	{ "token_save_failing", FAMILY_GAUGE, { NULL },
	    "1 while the token ceiling cannot be saved in the lock dir." },
};

/* The per-name families, from the members of each "busiest" entry. */
static const struct family busiest_families[] = {
	{ "waiters", FAMILY_GAUGE, { NULL },
	    "Requests waiting for this lock (the busiest names only)." },
	{ "holders", FAMILY_GAUGE, { NULL },
	    "Grants of this lock held now (the busiest names only)." },
	{ "oldest_wait_seconds", FAMILY_GAUGE, { NULL },
	    "How long this lock's first waiter has waited (busiest only)." },
};

static const char *const busiest_names[] = {
	"lock_waiters", "lock_holders", "lock_oldest_wait_seconds"
};

/* The text made so far; failed once an allocation failed. */
struct text {
	char			*buf;
	size_t			 len;
	size_t			 cap;
	int			 failed;
	enum proto_metrics_format format;
};

/* One label of a sample. */
struct label {
	const char		*name;
	const char		*value;
};

/* Append n bytes. */
static void
text_add(struct text *t, const char *s, size_t n)
{
	size_t	 cap;
	char	*grown;

	if (t->failed)
		return;
	if (t->len + n + 1 > t->cap) {
		for (cap = t->cap > 0 ? t->cap : 4096; cap < t->len + n + 1;)
			cap *= 2;
		if ((grown = realloc(t->buf, cap)) == NULL) {
			t->failed = 1;
			return;
		}
		t->buf = grown;
		t->cap = cap;
	}
	memcpy(t->buf + t->len, s, n);
	t->len += n;
	t->buf[t->len] = '\0';
}

static void
text_str(struct text *t, const char *s)
{
	text_add(t, s, strlen(s));
}

/*
 * A label value, escaped as both formats want: backslash, double quote
 * and newline.  Text that is not UTF-8 has its non-ASCII bytes as '?'.
 */
static void
text_label_value(struct text *t, const char *s)
{
	size_t		 len = strlen(s), i;
	int		 utf8 = proto_utf8_valid(s, len);
	unsigned char	 c;

	for (i = 0; i < len; i++) {
		c = (unsigned char)s[i];
		if (c == '\\')
			text_add(t, "\\\\", 2);
		else if (c == '"')
			text_add(t, "\\\"", 2);
		else if (c == '\n')
			text_add(t, "\\n", 2);
		else if (c >= 0x80 && !utf8)
			text_add(t, "?", 1);
		else
			text_add(t, s + i, 1);
	}
}

/* A float as both formats write it: shortest exact, or +Inf/NaN. */
static void
double_text(char *buf, size_t size, double v)
{
	if (isnan(v))
		snprintf(buf, size, "NaN");
	else if (isinf(v))
		snprintf(buf, size, v > 0 ? "+Inf" : "-Inf");
	else {
		snprintf(buf, size, "%.15g", v);
		if (strtod(buf, NULL) != v)
			snprintf(buf, size, "%.17g", v);
	}
}

static void
text_double(struct text *t, double v)
{
	char	 buf[DOUBLE_TEXT];

	double_text(buf, sizeof buf, v);
	text_str(t, buf);
}

/* A JSON number (or boolean, as 0 or 1) as a sample value; -1 if neither. */
static int
text_value(struct text *t, struct json_object *v)
{
	char	 buf[32];

	switch (json_object_get_type(v)) {
	case json_type_int:
		snprintf(buf, sizeof buf, "%" PRId64, json_object_get_int64(v));
		text_str(t, buf);
		return 0;
	case json_type_double:
		text_double(t, json_object_get_double(v));
		return 0;
	case json_type_boolean:
		text_str(t, json_object_get_boolean(v) ? "1" : "0");
		return 0;
	default:
		return -1;
	}
}

/* A family's name as its samples start: the prefix, the key, a suffix. */
static void
text_name(struct text *t, const char *key, const char *suffix)
{
	text_str(t, PREFIX);
	text_str(t, key);
	text_str(t, suffix);
}

/* A sample's name and labels, up to its value. */
static void
text_sample_head(struct text *t, const char *key, const char *suffix,
    const struct label *labels, size_t n)
{
	size_t	 i;

	text_name(t, key, suffix);
	if (n > 0) {
		text_add(t, "{", 1);
		for (i = 0; i < n; i++) {
			if (i > 0)
				text_add(t, ",", 1);
			text_str(t, labels[i].name);
			text_add(t, "=\"", 2);
			text_label_value(t, labels[i].value);
			text_add(t, "\"", 1);
		}
		text_add(t, "}", 1);
	}
	text_add(t, " ", 1);
}

/*
 * A family's HELP and TYPE lines.  OpenMetrics names a counter without
 * the _total its samples carry; Prometheus' format names it with it.
 */
static void
text_family_head(struct text *t, const struct family *f, const char *name)
{
	static const char *const types[] = { "gauge", "counter", "histogram" };
	size_t		 len = strlen(name);
	char		 family[128];

	if (f->type == FAMILY_COUNTER &&
	    t->format == PROTO_METRICS_OPENMETRICS && len > 6 && strcmp(name + len - 6, "_total") == 0)
		len -= 6;
	snprintf(family, sizeof family, "%.*s", (int)len, name);
	text_str(t, "# HELP " PREFIX);
	text_str(t, family);
	text_add(t, " ", 1);
	text_str(t, f->help);
	text_str(t, "\n# TYPE " PREFIX);
	text_str(t, family);
	text_add(t, " ", 1);
	text_str(t, types[f->type]);
	text_add(t, "\n", 1);
}

/*
 * One histogram's samples, from {"buckets":[[le,count],...],"count":N,
 * "sum":S} with cumulative counts; nothing if it is not of that shape.
 */
static void
text_histogram(struct text *t, const char *key, struct json_object *h,
    struct label *labels, size_t n)
{
	struct json_object	*buckets, *count, *sum, *pair, *le, *c;
	char			 bound[DOUBLE_TEXT];
	size_t			 i, nb;

	if (!json_object_object_get_ex(h, "buckets", &buckets) ||
	    !json_object_is_type(buckets, json_type_array) ||
	    !json_object_object_get_ex(h, "count", &count) ||
	    !json_object_object_get_ex(h, "sum", &sum))
		return;
	labels[n].name = "le";
	nb = json_object_array_length(buckets);
	for (i = 0; i < nb; i++) {
		pair = json_object_array_get_idx(buckets, i);
		if (!json_object_is_type(pair, json_type_array) ||
		    json_object_array_length(pair) != 2)
			continue;
		le = json_object_array_get_idx(pair, 0);
		c = json_object_array_get_idx(pair, 1);
		if (!json_object_is_type(le, json_type_double) &&
		    !json_object_is_type(le, json_type_int))
			continue;
		double_text(bound, sizeof bound, json_object_get_double(le));
		labels[n].value = bound;
		text_sample_head(t, key, "_bucket", labels, n + 1);
		if (text_value(t, c) == -1)
			text_add(t, "0", 1);
		text_add(t, "\n", 1);
	}
	labels[n].value = "+Inf";
	text_sample_head(t, key, "_bucket", labels, n + 1);
	text_value(t, count);
	text_str(t, "\n");
	text_sample_head(t, key, "_sum", labels, n);
	text_value(t, sum);
	text_str(t, "\n");
	text_sample_head(t, key, "_count", labels, n);
	text_value(t, count);
	text_str(t, "\n");
}

/* The samples of a family's value at depth, labels so far in labels. */
static void
text_samples(struct text *t, const struct family *f, struct json_object *v,
    struct label *labels, size_t depth)
{
	if (depth < 2 && f->labels[depth] != NULL) {
		if (!json_object_is_type(v, json_type_object))
			return;
		json_object_object_foreach(v, key, sub) {
			labels[depth].name = f->labels[depth];
			labels[depth].value = key;
			text_samples(t, f, sub, labels, depth + 1);
		}
		return;
	}
	if (f->type == FAMILY_HISTOGRAM) {
		if (json_object_is_type(v, json_type_object))
			text_histogram(t, f->key, v, labels, depth);
		return;
	}
	if (!json_object_is_type(v, json_type_int) &&
	    !json_object_is_type(v, json_type_double) &&
	    !json_object_is_type(v, json_type_boolean))
		return;
	text_sample_head(t, f->key, "", labels, depth);
	text_value(t, v);
	text_add(t, "\n", 1);
}

/* The per-name families, from the "busiest" array: scope and name. */
static void
text_busiest(struct text *t, struct json_object *busiest)
{
	struct json_object	*entry, *name, *scope, *v;
	struct label		 labels[LABELS_MAX];
	size_t			 i, j, n;

	if (!json_object_is_type(busiest, json_type_array))
		return;
	n = json_object_array_length(busiest);
	for (j = 0; j < sizeof busiest_families / sizeof busiest_families[0];
	    j++) {
		text_family_head(t, &busiest_families[j], busiest_names[j]);
		for (i = 0; i < n; i++) {
			entry = json_object_array_get_idx(busiest, i);
			if (!json_object_object_get_ex(entry, "name", &name) ||
			    !json_object_is_type(name, json_type_string) ||
			    !json_object_object_get_ex(entry, "scope",
			    &scope) ||
			    !json_object_is_type(scope, json_type_string) ||
			    !json_object_object_get_ex(entry,
			    busiest_families[j].key, &v))
				continue;
			labels[0].name = "scope";
			labels[0].value = json_object_get_string(scope);
			labels[1].name = "name";
			labels[1].value = json_object_get_string(name);
			text_sample_head(t, busiest_names[j], "", labels, 2);
			if (text_value(t, v) == -1)
				text_add(t, "0", 1);
			text_add(t, "\n", 1);
		}
	}
}

/*
 * The metrics object as text in format, ending in "# EOF" (OpenMetrics'
 * end; a comment in Prometheus' format, where it still shows the text is
 * whole).  Returns a string the caller frees, its length in *ret_len, or
 * NULL if out of memory or metrics is not an object.
 */
char *
proto_metrics_text(struct json_object *metrics,
    enum proto_metrics_format format, size_t *ret_len)
{
	struct text		 t = { NULL, 0, 0, 0, format };
	struct label		 labels[LABELS_MAX];
	struct json_object	*v;
	size_t			 i;

	if (!json_object_is_type(metrics, json_type_object))
		return NULL;
	for (i = 0; i < sizeof families / sizeof families[0]; i++) {
		if (!json_object_object_get_ex(metrics, families[i].key, &v))
			continue;
		text_family_head(&t, &families[i], families[i].key);
		text_samples(&t, &families[i], v, labels, 0);
	}
	if (json_object_object_get_ex(metrics, "busiest", &v))
		text_busiest(&t, v);
	text_str(&t, "# EOF\n");
	if (t.failed) {
		free(t.buf);
		return NULL;
	}
	if (ret_len != NULL)
		*ret_len = t.len;
	return t.buf;
}
