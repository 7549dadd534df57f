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
size_t		 store_file_nwatching(const struct store_file *);
void		 store_file_set_blocked_cb(struct store_file *,
		    store_file_blocked_cb, void *);
void		 store_file_adopt(struct store_file *, struct lock *, int,
		    enum proto_mode);
void		 store_file_watch_ended(struct store_file *);
int		 lock_fd(const struct lock *);
void		 lock_file_id(const struct lock *, dev_t *, ino_t *);
int		 lock_file_flocked(const struct lock *);
int		 lock_file_taken(const struct lock *);
void		 lock_file_path(const struct lock *, char *, size_t);
int		 store_file_handoff(struct lock *, int, enum proto_mode);
int		 store_file_fd_flocked(int, enum proto_mode *);
int		 file_id_cmp(uint64_t, uint64_t, uint64_t, uint64_t);
const char	*store_file_remote_fs(unsigned long);

/* outside.c: flocks held by processes outside the broker. */
struct outside_holder {
	pid_t		 pid;
	dev_t		 dev;
	ino_t		 ino;
	enum proto_mode	 mode;
	int		 own;		/* the daemon's: a client's */
	char		 command[32];	/* "" until read for encoding */
	uid_t		 uid;		/* read with command */
};
struct outside_cache;

struct outside_cache *outside_cache_new(void);
void		 outside_cache_free(struct outside_cache *);
void		 outside_set_former(struct outside_cache *, const int32_t *,
		    size_t);
size_t		 outside_get(struct outside_cache *, int,
		    struct outside_holder **, double *);
ssize_t		 outside_flocks_on(dev_t, ino_t);
struct outside_holder *outside_find(struct outside_holder *, size_t, dev_t,
		    ino_t);
size_t		 outside_count(struct outside_holder *, size_t, dev_t, ino_t,
		    int);
struct json_object *outside_encode(struct outside_holder *);
ssize_t		 proc_read(const char *, char *, size_t);
ssize_t		 fd_path(int, char *, size_t);
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
int	 fd_write_all(int, const char *, size_t);	/* also metrics.c's */

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

/* What conns count, into a struct their owner keeps (metrics.c's). */
struct conn_counters {
	uint64_t	 throttles;		/* reading paused for output */
	uint64_t	 errors[PROTO_E_COUNT];	/* error replies, by code */
};

struct conn	*conn_new(struct event_base *, int, size_t,
		    const struct conn_cb *, void *);
void		 conn_free(struct conn *);
void		 conn_set_counters(struct conn *, struct conn_counters *);
void		 conn_note_error(struct conn *, enum proto_error);
int		 conn_throttled(const struct conn *);
size_t		 conn_unsent(const struct conn *);
void		 conn_send(struct conn *, struct json_object *);
void		 conn_write(struct conn *, const char *, size_t);
void		 conn_close_with(struct conn *, enum proto_error,
		    const char *);
size_t		 conn_take_fds(struct conn *, int *, size_t);
struct snap_session;
void		 conn_export(struct conn *, struct snap_session *);
struct conn	*conn_restore(struct event_base *,
		    const struct snap_session *, size_t,
		    const struct conn_cb *, void *);

/*
 * store_etcd.c: the lock store of cluster locks, keys in an etcd cluster
 * on one lease of the daemon's (etcd.h holds its pure half).
 */
#define ETCD_ENDPOINTS_MAX	16	/* URLs in --etcd */

struct store_etcd;
struct etcd_list_req;

struct etcd_config {
	const char	*endpoints;	/* "URL[,URL...]" */
	const char	*prefix;	/* keys under it */
	int		 ttl;		/* the lease's, in seconds */
	const char	*node;		/* this daemon, as others see it */
	size_t		 max_waits;	/* cluster locks with a key */
};

/* The calls up into the daemon, each given arg. */
struct store_etcd_hooks {
	/* The holder a new key stands for: a waiting request. */
	struct json_object *(*describe)(struct lock_req *, void *);
	/* A take waits behind another: try-only requests give up now. */
	void		 (*queued)(struct lock *, void *);
	/* The lease is lost: the lock's holders no longer hold it. */
	void		 (*lost)(struct lock *, void *);
	void		*arg;
};

typedef void (*store_etcd_list_cb)(struct json_object *, void *);

struct store_etcd *store_etcd_new(struct event_base *,
		    const struct etcd_config *, char *, size_t);
void		 store_etcd_shutdown(struct store_etcd *);
void		 store_etcd_free(struct store_etcd *);
struct lock_store *store_etcd_base(struct store_etcd *);
void		 store_etcd_set_hooks(struct store_etcd *,
		    const struct store_etcd_hooks *);
const char	*store_etcd_node(const struct store_etcd *);
struct json_object *store_etcd_holders(struct lock *);
int		 store_etcd_settled(struct lock *);
struct etcd_list_req *store_etcd_list(struct store_etcd *, const char *,
		    store_etcd_list_cb, void *);
void		 store_etcd_list_cancel(struct etcd_list_req *);

/*
 * metrics.c: the counters and gauges an operator scrapes (status with
 * "metrics":true, locks metrics, --metrics-file).  Plain numbers in the
 * session host, which the hot paths only add to: no lock, no allocation.
 * Gauges that the lock table and the sessions know already are read at
 * scrape time instead.
 */
enum metrics_refusal {
	METRICS_REFUSED_NOT_ALLOWED,	/* --allow-user, --allow-group */
	METRICS_REFUSED_MAX_CLIENTS,
	METRICS_REFUSED_PER_UID,	/* --max-clients-per-uid */
	METRICS_REFUSED_FD_LIMIT,	/* accept(2): out of descriptors */
	METRICS_REFUSED_NO_MEMORY,
	METRICS_REFUSED_COUNT
};

enum metrics_cancel {
	METRICS_CANCEL_RELEASE,		/* the client released the wait */
	METRICS_CANCEL_DISCONNECT,	/* its connection closed */
	METRICS_CANCEL_COUNT
};

/* A histogram of seconds, over proto_metrics_bounds; not cumulative. */
struct metrics_hist {
	uint64_t	 bucket[PROTO_METRICS_BUCKETS + 1]; /* last: past all */
	double		 sum;
};

/* What is counted per scope (enum proto_scope). */
struct metrics_scope {
	uint64_t		 grants[2];	/* by enum proto_mode */
	uint64_t		 timeouts;
	struct metrics_hist	 wait;
	struct metrics_hist	 hold;
};

struct metrics {
	uint64_t		 accepted;
	uint64_t		 refused[METRICS_REFUSED_COUNT];
	uint64_t		 cancels[METRICS_CANCEL_COUNT];
	struct metrics_scope	 scope[2];
	struct conn_counters	 conn;
	int64_t			 token_ceiling;	/* saved; server.c sets it */
	int			 token_failing;	/* the last save failed */
};

struct session_host;
struct metrics_file;

void		 metrics_observe(struct metrics_hist *, double);
struct json_object *metrics_encode(struct session_host *);
struct metrics_file *metrics_file_new(const char *, double, char *, size_t);
void		 metrics_file_free(struct metrics_file *);
void		 metrics_file_tick(struct metrics_file *, struct session_host *);
int		 metrics_file_write(struct metrics_file *,
		    struct session_host *, char *, size_t);

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
	struct store_file	*store;		/* under locktab */
	struct locktab		*cluster;	/* over etcd, or NULL */
	struct store_etcd	*etcd;		/* its store, or NULL */
	struct listing		*listing;
	size_t			 max_locks_per_client;
	size_t			 max_lock_files;	/* 0: no bound */
	size_t			 output_high;	/* unread reply bytes */
	double			 started;	/* monotonic, for uptime */
	struct session_list	 sessions;	/* kept by session.c */
	TAILQ_HEAD(, deadlock_group) groups;	/* session.c's */
	struct json_tokener	*tok;		/* session.c's, shared */
	size_t			 nsessions;
	struct metrics		 metrics;	/* metrics.c's counters */
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
struct snap_req;
int		 session_export(struct session *, uint32_t,
		    struct snap_session *);
void		 session_req_ref(const struct lock_req *, struct snap_req *);
struct snap;
int		 session_export_all(struct session_host *, struct snap *);
struct session	*session_restore(struct session_host *,
		    const struct snap_session *, int);
struct snap_acquire;
int		 session_restore_acquire(struct session *,
		    struct snap_acquire *, struct lock *);
void		 session_failed(struct lock_req *, int, void *);
void		 session_contended(struct lock_req *, size_t,
		    struct lock_req *, void *);
struct json_object *session_cluster_describe(struct lock_req *, void *);
void		 session_cluster_queued(struct lock *, void *);
void		 session_cluster_lost(struct lock *, void *);
void		 session_cluster_drop_all(struct session_host *);
void		 session_converted(struct lock_req *, int, void *);
void		 session_convert_drop_all(struct session_host *);
void		 session_output(struct session_host *, size_t *, size_t *);

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
struct json_object *listing_request(struct lock_req *);
void		 listing_outside_counts(struct listing *, size_t *, size_t *);
struct snap_handoff;
size_t		 listing_handoffs_export(struct listing *,
		    struct snap_handoff **);
void		 listing_handoff_restore(struct listing *,
		    const struct snap_handoff *);
/* The file of a path a list asks for: its identity and its path. */
struct listing_file {
	dev_t			 dev;
	ino_t			 ino;
	const char		*path;
};

struct json_object *listing_locks(struct listing *, const char *,
		    const struct listing_file *, int, const char *, size_t,
		    int *);

/*
 * state.c: what survives a reload (an exec in place) or a restart
 * through systemd's descriptor store, as plain data, and its one format.
 * Descriptors are kept as the numbers of the process that wrote the
 * state; a restart maps them to the numbers it got (state_map_fds).
 * Every fd field is -1 when absent.  Bump STATE_VERSION on any change of
 * the format.
 */
#define STATE_VERSION	3
#define STATE_ENV	"LOCKSD_STATE_FD"	/* the memfd, on a reload */
#define STATE_FDNAME	"~=state"	/* the memfd, on a restart */

struct snap_fds {
	int			 fd[PROTO_MAX_FDS];
	uint32_t		 n;		/* may exceed PROTO_MAX_FDS */
	uint32_t		 at;
};

struct snap_acquire {
	char			*target;	/* the name or path asked */
	char			*owner;
	char			*id_text;
	uint32_t		 held;
	uint32_t		 mode;		/* enum proto_mode */
	int64_t			 token;		/* 0 while waiting */
	double			 since;		/* realtime */
	double			 started;	/* monotonic, as are: */
	double			 timeout_at;	/* 0: none */
	double			 notify_at;	/* 0: none, or sent */
	uint32_t		 by_path;
	uint64_t		 path_dev;
	uint64_t		 path_ino;
	int			 handoff_fd;
	int			 had_handoff;	/* the state named one */
	uint32_t		 notify_contended; /* version 2 on */
	double			 told_at;	/* monotonic; 0: never */
	uint32_t		 detect_deadlock; /* version 3 on */
};

#define SNAP_FD_GROUPS	4		/* conn.c's CONN_FD_GROUPS */

/* Which file a descriptor is: how a batch from the store is told apart. */
struct snap_id {
	uint64_t		 dev;
	uint64_t		 ino;
};

struct snap_session {
	int			 fd;
	struct snap_id		 id;		/* of the socket */
	struct peer		 peer;
	char			*label;
	uint32_t		 counted;
	uint32_t		 closing;
	char			*partial;
	uint32_t		 partial_len;
	char			*out;
	uint32_t		 out_len;
	uint32_t		 ngroups;
	struct snap_fds		 groups[SNAP_FD_GROUPS];
	uint32_t		 nacquires;
	struct snap_acquire	*acquires;
};

/* One request of a lock: the session's index, and its acquire's. */
struct snap_req {
	uint32_t		 session;
	uint32_t		 acquire;
};

struct snap_lock {
	char			*name;		/* the lock table's key */
	int			 fd;
	struct snap_id		 id;		/* of its file */
	uint32_t		 flock;		/* 0 none, 1 shared, 2 excl. */
	uint32_t		 nholders;	/* reqs: holders, then waiters */
	uint32_t		 nreqs;
	struct snap_req		*reqs;
};

struct snap_handoff {
	char			*key;
	char			*name;
	uint64_t		 dev;
	uint64_t		 ino;
	int32_t			 pid;
	uint32_t		 uid;
	uint32_t		 gid;
	char			*client;
	char			*owner;
	uint32_t		 mode;
	double			 since;
	int64_t			 token;
	int32_t			 parent;
};

/*
 * Pids of the daemons a restart chain came through: flocks they took
 * keep their pid in /proc/locks, and are still the daemon's own.
 */
#define SNAP_FORMER_MAX	8

struct snap {
	uint32_t		 version;	/* of what was read */
	int32_t			 pid;		/* the writer's */
	uint32_t		 nformer;
	int32_t			 former[SNAP_FORMER_MAX]; /* earlier daemons' */
	int			 claim_fd;
	int			 lock_dirfd;
	uint32_t		 own_socket;
	double			 started;	/* monotonic */
	uint32_t		 nlisteners;
	int			*listeners;
	uint32_t		 nsessions;
	struct snap_session	*sessions;
	uint32_t		 nlocks;
	struct snap_lock	*locks;
	uint32_t		 nhandoffs;
	struct snap_handoff	*handoffs;
	int			 owned;		/* strings are the snap's */
};

typedef void	(*state_fd_cb)(int *, void *);

int		 state_write(int, const struct snap *);
int		 state_read(int, struct snap *, char *, size_t);
void		 state_free(struct snap *);
void		 state_each_fd(struct snap *, state_fd_cb, void *);
int		 state_memfd(const struct snap *);

/* reload.c: SIGHUP's exec in place, SIGTERM's descriptor store. */
struct server;

void		 reload_init(char **);
int		 reload_exec(struct server *);
int		 reload_fdstore_wanted(void);
int		 reload_fdstore(struct server *);
int		 reload_startup(struct snap *, int **, size_t *);
void		 reload_store_forget(void);
void		 reload_store_forget_wait(void);

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
	struct snap	*restore;	/* a reload's state, or NULL */
	const struct etcd_config *etcd;	/* --etcd, or NULL: no cluster */
	const char	*metrics_file;	/* --metrics-file, or NULL */
	double		 metrics_interval; /* its rewrites, in seconds */
};

struct server	*server_new(struct event_base *, const struct server_config *);
void		 server_parent_dir(const char *, char *, size_t);
void		 server_free(struct server *);
struct event_base *server_base(struct server *);
struct locktab	*server_locktab(struct server *);
struct session_host *server_sessions(struct server *);
size_t		 server_nconns(const struct server *);
int		 server_failed(const struct server *);
int		 server_snapshot(struct server *, struct snap *);
void		 server_handed_over(struct server *);

/* clock.c */
double		 clock_realtime(void);
double		 clock_monotonic(void);

/*
 * sd.c: socket activation and sd_notify through libsystemd.  The prefix
 * is systemd_, as sd_ belongs to libsystemd.
 */
struct systemd;

int		 systemd_take_fd(int, const char *, int);
int		 systemd_socket_path(int, char *, size_t);
struct systemd	*systemd_new(struct event_base *);
void		 systemd_free(struct systemd *);
void		 systemd_ready(struct systemd *, const char *);
void		 systemd_status(struct systemd *, const char *);
void		 systemd_stopping(struct systemd *);
void		 systemd_reloading(struct systemd *);

#endif /* LOCKSD_DAEMON_H */
