/*
 * liblocks' internal header, shared by its files and never installed.
 *
 * The library has four rooms, and calls run one way, from the top down:
 *
 *   locks.c      the public operations: connect and hello, acquire,
 *                release, ping, list, status, and the liveness checks;
 *   transport.c  the socket and its trust checks, sending a request,
 *                reading a line, and the transaction that waits for a
 *                request's final reply;
 *   event.c      what to do with an event line, whether it came during a
 *                transaction or pushed between requests;
 *   decode.c     replies turned into the public types (holders, locks,
 *                lists, status) and their accessors.
 *
 * error.c, below them all, keeps the error names and the last message.
 */
#ifndef LIBLOCKS_H
#define LIBLOCKS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "locks.h"
#include "protocol.h"

#define LOCKS_MAX_REPLY	(16 * 1024 * 1024)	/* bytes in one reply line */
#define LOCKS_MSG_MAX	1024			/* bytes kept of a message */

struct locks_conn {
	int			 fd;
	int			 broken;	/* after a transport error */
	int			 waiting;	/* for a request's reply */
	int64_t			 next_id;
	char			*path;
	struct json_tokener	*tok;

	char			*buf;		/* bytes read, not yet used */
	size_t			 cap;
	size_t			 off;		/* start of the next line */
	size_t			 len;		/* end of the bytes read */
	size_t			 scan;		/* searched for LF up to here */

	char			 msg[LOCKS_MSG_MAX];

	char			**held;		/* granted, not released;
						   cluster ones after
						   HELD_CLUSTER */
	size_t			 nheld;
	int			 cluster_lost;	/* a lost event came */

	struct contended_watch	*contended;	/* held locks that asked */
	size_t			 ncontended;
	int			 in_contended;	/* a callback runs */

	int			 send_fds[PROTO_MAX_FDS]; /* go with the next
						   request, borrowed */
	size_t			 nsend_fds;
};

/* A lock whose contended events go to a callback, while it is held. */
struct contended_watch {
	char			*name;		/* as acquired */
	locks_contended_cb	 cb;
	void			*arg;
};

/* The first byte of a cluster name in the held list: no name has it. */
#define HELD_CLUSTER	'\x1f'

struct locks_holder {
	int			 external;
	pid_t			 pid;
	uid_t			 uid;
	gid_t			 gid;
	char			*client;
	char			*owner;
	char			*command;
	char			*node;		/* cluster holders: "" else */
	enum locks_mode		 mode;
	double			 since;
	int64_t			 token;
};

struct locks_lock {
	char			*name;
	locks_holder		*holders;
	size_t			 nholders;
	locks_holder		*waiters;
	size_t			 nwaiters;
};

struct locks_list {
	locks_lock		*locks;
	size_t			 count;
	char			*json;
};

struct locks_status {
	char			*version;
	double			 uptime;
	int64_t			 connections;
	int64_t			 locks_held;
	int64_t			 waiters;
	int64_t			 acquired_total;
	char			*json;
};

struct locks_metrics {
	struct json_object	*obj;		/* the reply's metrics */
	char			*json;
	char			*text[2];	/* by locks_metrics_format */
};

/* A blocking callback and what it needs, for the duration of one acquire. */
struct blocking {
	const char		*name;
	locks_blocking_cb	 cb;
	void			*arg;
};

/* error.c */
void		 error_msg(locks_conn *, const char *, ...)
		    __attribute__((format(printf, 2, 3)));

/* transport.c */

/* The start of every message for a socket that did not answer. */
#define CONN_FAILED	"cannot connect to "

/* Which checks a socket must pass before liblocks talks on it. */
enum conn_trust {
	CONN_TRUST_CALLER,	/* the caller's choice: none */
	CONN_TRUST_USER,	/* the per-user socket: ours or root's */
	CONN_TRUST_SYSTEM	/* the system socket: root's or its owner's */
};

int		 conn_open(const char *, enum conn_trust, locks_conn **);
void		 conn_free(locks_conn *);
int		 conn_break(locks_conn *, int);
int		 conn_transact(locks_conn *, const struct proto_request *,
		    const struct blocking *, struct json_object **,
		    const char **, size_t *);
int		 conn_transact_fast(locks_conn *,
		    const struct proto_request *, const struct blocking *,
		    struct json_object **, int64_t *);
int		 conn_reply_error(locks_conn *, struct json_object *);
int		 conn_simple(locks_conn *, const struct proto_request *);
int		 conn_drain(locks_conn *);

/* event.c */
int		 event_dispatch(locks_conn *, struct json_object *,
		    const struct blocking *);

/* locks.c */
void		 conn_cluster_lost(locks_conn *, const char *);
void		 conn_local_lost(locks_conn *, const char *);
int		 conn_contended_watched(const locks_conn *, const char *);
void		 conn_contended(locks_conn *, const char *, int,
		    const locks_holder *);
void		 contended_forget_all(locks_conn *);

/* decode.c */
int		 decode_string(const char *, char **);
int64_t		 decode_reply_int(struct json_object *, const char *);
int		 decode_holder(struct json_object *, locks_holder *);
void		 decode_holder_clear(locks_holder *);
int		 decode_holders(struct json_object *, const char *,
		    locks_holder **, size_t *);
void		 decode_lock_clear(locks_lock *);
int		 decode_list(struct json_object *, locks_list *);
int		 decode_list_page(struct json_object *, struct json_object *,
		    const char *, char *, size_t, int *);
int		 decode_status(struct json_object *, locks_status *);

#endif /* LIBLOCKS_H */
