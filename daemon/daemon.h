/*
 * locksd internals, grouped by the file that implements them.
 */
#ifndef LOCKSD_DAEMON_H
#define LOCKSD_DAEMON_H

#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>

#include <event2/event.h>

#include "locktab.h"
#include "protocol.h"

#define LOCKSD_VERSION LOCKS_VERSION	/* from CMake's project() */

/* log.c */
void	 log_init(int);
void	 log_warn(const char *, ...) __attribute__((format(printf, 1, 2)));
void	 log_warnx(const char *, ...) __attribute__((format(printf, 1, 2)));
void	 log_info(const char *, ...) __attribute__((format(printf, 1, 2)));
void	 log_debug(const char *, ...) __attribute__((format(printf, 1, 2)));
void	 fatal(const char *, ...)
	    __attribute__((format(printf, 1, 2), noreturn));
void	 fatalx(const char *, ...)
	    __attribute__((format(printf, 1, 2), noreturn));

/*
 * watch.c: threads that wait in flock(2) on outside holders, the file
 * store's helper.
 */
struct watcher;
struct store_file;

struct watcher	*watcher_new(struct event_base *, struct store_file *, int);
void		 watcher_free(struct watcher *);
size_t		 watcher_nwatching(const struct watcher *);

/*
 * store_file.c: the lock store of files in the lock dir (locktab.h), their
 * flock(2)s, the --max-lock-files bound and the retry poll for outsiders.
 */
typedef void (*store_file_blocked_cb)(struct lock *, int, enum proto_mode,
		    void *);

struct store_file *store_file_new(struct event_base *, int, const char *,
		    int64_t);
void		 store_file_free(struct store_file *);
struct lock_store *store_file_base(struct store_file *);
int		 store_file_set_max_files(struct store_file *, size_t);
size_t		 store_file_nfiles(const struct store_file *);
size_t		 store_file_max_paths(const struct store_file *);
void		 store_file_set_blocked_cb(struct store_file *,
		    store_file_blocked_cb, void *);
void		 store_file_adopt(struct store_file *, struct lock *, int,
		    enum proto_mode);
void		 store_file_watch_ended(struct store_file *);
int		 lock_fd(const struct lock *);
void		 lock_file_id(const struct lock *, dev_t *, ino_t *);
int		 lock_file_flocked(const struct lock *);
void		 lock_file_path(const struct lock *, char *, size_t);
int		 store_file_handoff(struct lock *, int, enum proto_mode);
int		 store_file_fd_flocked(int, enum proto_mode *);
const char	*store_file_remote_fs(unsigned long);

/* outside.c: flocks held by processes outside the broker. */
struct outside_holder {
	pid_t		 pid;
	dev_t		 dev;
	ino_t		 ino;
	enum proto_mode	 mode;
	int		 own;		/* the daemon's: a client's */
	char		 command[32];	/* "" until read for encoding */
};
struct outside_cache;

struct outside_cache *outside_cache_new(void);
void		 outside_cache_free(struct outside_cache *);
size_t		 outside_get(struct outside_cache *, int,
		    struct outside_holder **, double *);
struct outside_holder *outside_find(struct outside_holder *, size_t, dev_t,
		    ino_t);
size_t		 outside_count(struct outside_holder *, size_t, dev_t, ino_t,
		    int);
struct json_object *outside_encode(struct outside_holder *);
ssize_t		 proc_read(const char *, char *, size_t);
void		 utf8_clean(char *);

/* access.c: who may connect, from the peer's credentials. */
struct access;
struct peer;

struct access	*access_new(void);
void		 access_free(struct access *);
int		 access_allow_user(struct access *, const char *);
int		 access_allow_group(struct access *, const char *);
int		 access_allows(const struct access *, int, const struct peer *);

/* token.c */
#define TOKEN_FILE	".tokens"	/* in the lock dir */

#define TOKEN_MAX	(1LL << 53)	/* tokens stay below: JSON numbers */
int	 token_read_ceiling(int, int64_t *);
int	 token_seed(int, double, int64_t *);
int	 token_reserve(int, int64_t, const char **);

/*
 * conn.c: one client connection's transport: line framing, output with
 * backpressure, and teardown.  It knows nothing of requests: it hands
 * each line to its owner and says when the peer is closing and when the
 * transport is done.
 *
 * Freeing rule: only the owner frees a conn, with conn_free, and only
 * from its gone callback or from outside any conn callback (shutdown).
 * conn calls gone as the last thing it does in an event callback and
 * never touches the conn afterwards; conn_send, conn_write and
 * conn_close_with never free, so an owner may call them on any conn from
 * any callback.
 */
struct conn;

struct conn_cb {
	/* One request line, without its newline. */
	void	(*line)(const char *, size_t, void *);
	/* The peer is closing (EOF or a final error): no more lines come. */
	void	(*closing)(void *);
	/* The transport is done: the owner must conn_free it now. */
	void	(*gone)(void *);
};

struct conn	*conn_new(struct event_base *, int, size_t,
		    const struct conn_cb *, void *);
void		 conn_free(struct conn *);
void		 conn_send(struct conn *, struct json_object *);
void		 conn_write(struct conn *, const char *, size_t);
void		 conn_close_with(struct conn *, enum proto_error,
		    const char *);
size_t		 conn_take_fds(struct conn *, int *, size_t);

/*
 * session.c: one client's session over its conn: the tokener and the
 * parse, the client label, the acquires, and dispatch.  What all
 * sessions share, and the calls up into the daemon, are in a
 * session_host that server.c owns.
 */
struct session;
TAILQ_HEAD(session_list, session);

struct peer {
	pid_t		 pid;
	uid_t		 uid;
	gid_t		 gid;
};

/* Who a session's client is, as list and blocking events show it. */
struct client_info {
	struct peer	 peer;
	char		*label;		/* from hello, or "" */
};

/* One broker holder or waiter: plain data; lock_req_arg points at it. */
struct holder_info {
	const struct client_info *client;
	const char	*owner;
};

struct session_host {
	struct event_base	*base;
	struct locktab		*locktab;
	struct listing		*listing;
	size_t			 max_locks_per_client;
	size_t			 max_lock_files;	/* 0: no bound */
	size_t			 output_high;	/* unread reply bytes */
	double			 started;	/* monotonic, for uptime */
	struct session_list	 sessions;	/* kept by session.c */
	size_t			 nsessions;
	/* Calls up into the daemon, each given arg. */
	void		 (*closed)(const struct peer *, int, void *);
	const char	*(*tokens_exhausted)(void *);
	void		 (*lock_file_missing)(void *);
	void			*arg;
};

struct session	*session_new(struct session_host *, int,
		    const struct peer *, int);
void		 session_free(struct session *);
void		 session_free_all(struct session_host *);
void		 session_granted(struct lock_req *, void *);
void		 session_failed(struct lock_req *, int, void *);

/* listing.c: holders and locks as list and blocking events show them. */
struct handoff;
TAILQ_HEAD(handoff_list, handoff);

struct listing {
	struct locktab		*locktab;
	struct outside_cache	*outside;
	int			 lock_dirfd;
	struct handoff_list	 handoffs;	/* oldest first */
	size_t			 nhandoffs;
};

/* A descriptor-form lock handed over to its client's open file. */
struct handoff_info {
	const char		*key;		/* the lock table's name */
	const char		*name;		/* as list shows it */
	dev_t			 dev;
	ino_t			 ino;
	struct proto_holder	 holder;
	pid_t			 parent;	/* of holder.pid, or 0 */
};

void		 listing_init(struct listing *, struct locktab *,
		    struct outside_cache *, int);
void		 listing_free(struct listing *);
void		 listing_handoff_add(struct listing *,
		    const struct handoff_info *);
struct json_object *listing_holders(struct listing *, struct lock *);
/* The file of a path a list asks for: its identity and its path. */
struct listing_file {
	dev_t			 dev;
	ino_t			 ino;
	const char		*path;
};

struct json_object *listing_locks(struct listing *, const char *,
		    const struct listing_file *, int, const char *, size_t,
		    int *);

/* server.c: the listening socket, signals, timers and shared state. */
struct server_config {
	const char	*socket_path;
	const char	*lock_dir;
	size_t		 max_locks_per_client;
	size_t		 max_clients;
	size_t		 output_high;	/* unread reply bytes; 0: 1 MiB */
	struct access	*access;	/* who may connect; owned by main */
	const int	*listen_fds;	/* inherited sockets, or NULL: bind */
	size_t		 nlisten_fds;
	size_t		 max_clients_per_uid;	/* 0: no per-uid bound */
	int64_t		 token_reserve;	/* tokens saved ahead; 0: 1e9 */
	size_t		 max_lock_files; /* 0: no bound */
};

struct server	*server_new(struct event_base *, const struct server_config *);
void		 server_parent_dir(const char *, char *, size_t);
void		 server_free(struct server *);
struct event_base *server_base(struct server *);
struct locktab	*server_locktab(struct server *);
struct session_host *server_sessions(struct server *);
size_t		 server_nconns(const struct server *);
int		 server_failed(const struct server *);

/* clock.c */
double		 clock_realtime(void);
double		 clock_monotonic(void);

/*
 * sd.c: socket activation and sd_notify through libsystemd.  The prefix
 * is systemd_, as sd_ belongs to libsystemd.
 */
struct systemd;

size_t		 systemd_listen_fds(int **);
int		 systemd_socket_path(int, char *, size_t);
struct systemd	*systemd_new(struct event_base *);
void		 systemd_free(struct systemd *);
void		 systemd_ready(struct systemd *, const char *);
void		 systemd_status(struct systemd *, const char *);
void		 systemd_stopping(struct systemd *);

#endif /* LOCKSD_DAEMON_H */
