/*
 * The locks wire format, shared by locksd and liblocks.  No I/O lives here:
 * only limits, name rules, and the encode/decode of messages as json-c
 * objects, with json-c-free paths for the hot request lines.
 * protocol/PROTOCOL.md is the specification this code follows.
 */
#ifndef LOCKS_PROTOCOL_H
#define LOCKS_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <json-c/json.h>

#include "mode.h"

/*
 * Protocol version sent in the hello reply.  Whoever changes the meaning
 * or shape of any message must bump this and update PROTOCOL.md.
 */
#define PROTO_VERSION 1

#define PROTO_MAX_LINE 65536	/* bytes in one request line, without LF */
#define PROTO_MAX_NAME 200	/* bytes in a lock name */
#define PROTO_MAX_PATH 4096	/* bytes in a path lock's target */
#define PROTO_MAX_FDS 2		/* descriptors with one request */
#define PROTO_MAX_LABEL 256	/* bytes in an owner or client label */
#define PROTO_MAX_ID 1024	/* bytes in an id's JSON text */
#define PROTO_MAX_LIST 1000	/* largest limit of a list request */
#define PROTO_MAX_DEPTH 8	/* JSON nesting depth accepted in a request */
#define PROTO_MAX_SECONDS 1e9	/* largest timeout or notify_after */

/*
 * The system broker's socket (systemd/locksd.socket listens there), the
 * one place that names it; $LOCKS_SYSTEM_SOCKET moves it (protocol.c).
 */
#define PROTO_SYSTEM_SOCKET "/run/locksd/locksd.sock"
#define PROTO_UINT_DIGITS 20	/* decimal digits of any uint64_t */

/* A limit above as text, for messages: PROTO_TEXT(PROTO_MAX_NAME) is "200". */
#define PROTO_TEXT_(x)	#x
#define PROTO_TEXT(x)	PROTO_TEXT_(x)

/* protocol.c */

/* Where a lock lives: this machine's daemon, or the etcd cluster. */
enum proto_scope {
	PROTO_SCOPE_LOCAL = 0,
	PROTO_SCOPE_CLUSTER
};

enum proto_error {
	PROTO_OK = 0,
	PROTO_E_BAD_JSON,
	PROTO_E_BAD_REQUEST,
	PROTO_E_UNKNOWN_OP,
	PROTO_E_INVALID_NAME,
	PROTO_E_ALREADY_HELD,
	PROTO_E_NOT_HELD,
	PROTO_E_TIMEOUT,
	PROTO_E_CANCELLED,
	PROTO_E_TOO_LARGE,
	PROTO_E_LIMIT,
	PROTO_E_PERMISSION_DENIED,
	PROTO_E_INTERNAL,
	PROTO_E_UNSUPPORTED,
	PROTO_E_UNAVAILABLE,
	PROTO_E_DEADLOCK,
	PROTO_E_COUNT
};

enum proto_op {
	PROTO_OP_HELLO,
	PROTO_OP_PING,
	PROTO_OP_ACQUIRE,
	PROTO_OP_RELEASE,
	PROTO_OP_LIST,
	PROTO_OP_STATUS,
	PROTO_OP_CONVERT
};

/*
 * The ops and the fields of a request: the one list of each that both
 * decoders are made from, json-c's (protocol.c) and the fast path's
 * (scan.c).  The fast path also finds each by its first byte, in tables
 * of its own; tests/test_protocol.c fails if one is missing there.
 */
#define PROTO_OPS(X)							\
	X(HELLO, "hello") X(PING, "ping") X(ACQUIRE, "acquire")	\
	X(RELEASE, "release") X(LIST, "list") X(STATUS, "status")	\
	X(CONVERT, "convert")
#define PROTO_FIELDS(X)							\
	X(ID, "id") X(OP, "op") X(NAME, "name") X(MODE, "mode")		\
	X(TIMEOUT, "timeout") X(NOTIFY_AFTER, "notify_after")		\
	X(OWNER, "owner") X(CLIENT, "client") X(ALL, "all")		\
	X(LIMIT, "limit") X(AFTER, "after") X(HANDOFF, "handoff")	\
	X(SCOPE, "scope") X(NOTIFY_CONTENDED, "notify_contended")	\
	X(METRICS, "metrics") X(DETECT_DEADLOCK, "detect_deadlock")	\
	X(DEADLOCK_GROUP, "deadlock_group")

/* One decoded request; strings are borrowed from the json or the scratch. */
struct proto_request {
	enum proto_op		 op;
	struct json_object	*id;		/* NULL: see id_text */
	const char		*id_text;	/* id as JSON, not NUL-ended */
	size_t			 id_len;
	const char		*name;		/* NULL when absent; a path
						   if it holds a '/' */
	enum proto_mode		 mode;
	double			 timeout;	/* < 0 means wait forever */
	double			 notify_after;
	const char		*owner;		/* "" when absent */
	const char		*client;	/* "" when absent */
	int			 all;		/* list: outside-only locks too */
	int			 limit;		/* list: 1 to 1000, 0: none */
	const char		*after;		/* list: names past it */
	int			 handoff;	/* acquire: flock the
						   caller's descriptor */
	enum proto_scope	 scope;		/* acquire, release, list */
	int			 notify_contended; /* acquire: tell the
						   holder of waiters */
	int			 metrics;	/* status: with its metrics */
	int			 detect_deadlock; /* acquire: fail a wait
						   that closes a cycle */
	const char		*deadlock_group; /* acquire: its process's
						   node in the wait-for graph;
						   "" when absent */
};

/* Room for the strings of a request decoded on the fast path. */
struct proto_scratch {
	char			 buf[1024];
	size_t			 used;
};

/* One holder or waiter as it travels in list and blocking messages. */
/* An outside holder's uid when its process could not be seen. */
#define PROTO_NO_UID	((uid_t)-1)

struct proto_holder {
	int			 external;	/* held outside the broker */
	pid_t			 pid;
	uid_t			 uid;		/* PROTO_NO_UID: not known */
	gid_t			 gid;
	const char		*client;
	const char		*owner;
	const char		*command;	/* external holders only */
	const char		*node;		/* cluster holders only */
	enum proto_mode		 mode;
	double			 since;		/* unix time, seconds */
	int64_t			 token;		/* 0 for waiters */
	int			 converting;	/* an upgrade of it waits */
};

const char	*proto_error_code(enum proto_error);
enum proto_error proto_error_from_code(const char *);
int		 proto_name_valid(const char *, size_t);
int		 proto_is_path(const char *);
int		 proto_target_valid(const char *, size_t);
int		 proto_utf8_valid(const char *, size_t);
const char	*proto_socket_env(void);
const char	*proto_system_socket(void);
int		 proto_user_socket(char *, size_t);
int		 proto_default_socket(char *, size_t);

struct json_tokener *proto_tokener_new(void);
int		 proto_blank(const char *, size_t);
int		 proto_parse_line(struct json_tokener *, const char *, size_t,
		    struct json_object **);
const char	*proto_serialize(struct json_object *, size_t *);
const char	*proto_id_text(struct json_object *, size_t *);
struct json_object *proto_id_parse(const char *, size_t);

struct json_object *proto_request_id(const struct proto_request *);
enum proto_error proto_request_decode(struct json_object *,
		    struct proto_request *, const char **);
enum proto_error proto_request_parse(struct json_tokener *, const char *,
		    size_t, struct proto_scratch *, struct proto_request *,
		    struct json_object **, const char **);

struct json_object *proto_reply_new(struct json_object *, int);
struct json_object *proto_reply_error(struct json_object *, enum proto_error,
		    const char *);
struct json_object *proto_event_new(struct json_object *, const char *);
int		 proto_reply_is_final(struct json_object *);
enum proto_error proto_reply_error_decode(struct json_object *,
		    const char **);

struct json_object *proto_holder_encode(const struct proto_holder *);
int		 proto_holder_decode(struct json_object *,
		    struct proto_holder *);

/* format.c */

/*
 * The daemon's hot reply lines are made in a buffer of PROTO_REPLY_MAX
 * bytes, LF included, so a line is bounded but for its id: an id of up to
 * PROTO_REPLY_ID_INLINE bytes is in it, a longer one is left out, for the
 * caller to send between the buffer's first PROTO_REPLY_ID_AT bytes (the
 * {"id": that opens every reply) and the rest.
 */
#define PROTO_REPLY_ID_INLINE	64
#define PROTO_REPLY_ID_AT	6
#define PROTO_REPLY_MAX		(PROTO_MAX_NAME + PROTO_REPLY_ID_INLINE + 128)

const char	*proto_mode_name(enum proto_mode);
const char	*proto_scope_name(enum proto_scope);
int		 proto_name_plain(const char *);
struct json_object *proto_request_encode(const struct proto_request *,
		    int64_t);
size_t		 proto_request_format(char *, size_t,
		    const struct proto_request *, int64_t);
char		*proto_uint_digits(char *, uint64_t, int);
size_t		 proto_format_ok(char *, size_t, const char *, size_t);
size_t		 proto_format_grant(char *, size_t, const char *, size_t,
		    const char *, enum proto_mode, uint64_t, uint64_t);

/*
 * metrics.c: the metrics of a status reply (its "metrics" object) as the
 * text an operator's scraper reads: Prometheus' text format (0.0.4), or
 * OpenMetrics 1.0.  One formatter, for locks metrics and --metrics-file.
 */
#define PROTO_METRICS_BUCKETS	14	/* finite bounds of a histogram */
#define PROTO_METRICS_BUSIEST	10	/* names with series of their own */

enum proto_metrics_format {
	PROTO_METRICS_PROMETHEUS = 0,
	PROTO_METRICS_OPENMETRICS
};

extern const double proto_metrics_bounds[PROTO_METRICS_BUCKETS];

char		*proto_metrics_text(struct json_object *,
		    enum proto_metrics_format, size_t *);

/* scan.c */

int		 proto_request_scan(const char *, size_t,
		    struct proto_scratch *, struct proto_request *);
int		 proto_success_scan(const char *, size_t, int64_t, int64_t *);

/* Shared by the files of protocol/ only. */
void		 proto_request_reset(struct proto_request *);

#endif /* LOCKS_PROTOCOL_H */
