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

struct store_file *store_file_new(struct event_base *, int, int64_t);
void		 store_file_free(struct store_file *);
struct lock_store *store_file_base(struct store_file *);
int		 store_file_set_max_files(struct store_file *, size_t);
size_t		 store_file_nfiles(const struct store_file *);
void		 store_file_set_blocked_cb(struct store_file *,
		    store_file_blocked_cb, void *);
void		 store_file_adopt(struct store_file *, struct lock *, int,
		    enum proto_mode);
void		 store_file_watch_ended(struct store_file *);
int		 lock_fd(const struct lock *);

/* outside.c: flocks held by processes outside the broker. */
struct outside_holder {
	pid_t		 pid;
	ino_t		 ino;
	enum proto_mode	 mode;
	char		 command[32];	/* "" until read for encoding */
};
struct outside_cache;

struct outside_cache *outside_cache_new(void);
void		 outside_cache_free(struct outside_cache *);
size_t		 outside_get(struct outside_cache *, dev_t, int,
		    struct outside_holder **);
struct outside_holder *outside_find(struct outside_holder *, size_t, ino_t);
struct json_object *outside_encode(struct outside_holder *);

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

/* conn.c: one client connection, its framing and its output. */
struct server;
struct conn;
struct acquire;
TAILQ_HEAD(conn_list, conn);
TAILQ_HEAD(acquire_list, acquire);

struct peer {
	pid_t		 pid;
	uid_t		 uid;
	gid_t		 gid;
};

struct conn	*conn_new(struct server *, int, const struct peer *);
void		 conn_accept(struct server *, int);
void		 conn_send(struct conn *, struct json_object *);
void		 conn_write(struct conn *, const char *, size_t);
void		 conn_free_all(struct conn_list *);
struct server	*conn_server(struct conn *);
const struct peer *conn_peer(const struct conn *);
const char	*conn_client(const struct conn *);
int		 conn_set_client(struct conn *, const char *);
struct acquire_list *conn_acquires(struct conn *);

/* request.c: decode and answer requests; a connection's acquires. */
void		 request_dispatch(struct conn *, const struct proto_request *,
		    enum proto_error, const char *);
void		 request_drop_all(struct conn *);
void		 request_granted(struct lock_req *, void *);
void		 request_failed(struct lock_req *, int, void *);
struct json_object *request_holder_encode(struct lock_req *);

/* listing.c: holders and locks as list and blocking events show them. */
struct json_object *listing_holders(struct server *, struct lock *);
struct json_object *listing_locks(struct server *, const char *, int,
		    const char *, size_t, int *);

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
struct outside_cache *server_outside(struct server *);
int		 server_lock_dirfd(const struct server *);
struct conn_list *server_conns(struct server *);
size_t		 server_nconns(const struct server *);
size_t		 server_max_locks_per_client(const struct server *);
size_t		 server_max_lock_files(const struct server *);
size_t		 server_output_high(const struct server *);
enum proto_error server_admit(struct server *, int, const struct peer *,
		    const char **);
int		 server_conn_opened(struct server *, uid_t);
void		 server_conn_closed(struct server *, uid_t, int);
const char	*server_tokens_exhausted(struct server *);
void		 server_lock_file_missing(struct server *);
int		 server_failed(const struct server *);
double		 server_uptime(const struct server *);

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
