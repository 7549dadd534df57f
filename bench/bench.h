/*
 * locks-bench internals, grouped by the file that implements them.
 */
#ifndef LOCKS_BENCH_H
#define LOCKS_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define BENCH_MAX_RUNS	32	/* runs of one figure */
#define QUEUE_BUCKETS	9	/* buckets of the queue-drain scenario */
#define NTPUT		4	/* client counts of scenario 2 */
#define NCONT		3	/* client counts of scenario 3 */
#define MAX_SCALE	4	/* client counts of scenario 4 */

/* The systems compared, in the order a run measures them. */
enum sys {
	SYS_LOCKS,	/* locksd through liblocks */
	SYS_RAW,	/* locksd, the same lines written by hand */
	SYS_REDIS,	/* redis-server: SET NX PX, then DEL */
	SYS_ECHO,	/* a bare line-echo server: the limit */
	SYS_COUNT
};

/* Where each system listens; NULL when it is not running. */
struct target {
	const char	*path[SYS_COUNT];
};

/* stats.c */
struct samples {
	uint64_t	*v;
	size_t		 n;
	size_t		 cap;
};

struct figure {
	double		 v[BENCH_MAX_RUNS];
	int		 n;
};

uint64_t	 now_ns(void);
void		 sleep_secs(double);
int		 samples_add(struct samples *, uint64_t);
int		 samples_append(struct samples *, const struct samples *);
double		 samples_pct(struct samples *, double);
void		 samples_free(struct samples *);
void		 figure_add(struct figure *, double);
double		 figure_median(const struct figure *);
double		 figure_min(const struct figure *);
double		 figure_max(const struct figure *);
const char	*figure_fmt(const struct figure *, int, char *, size_t);

/* wire.c: a blocking, buffered client connection to a Unix socket. */
struct wire;

enum reply_kind {
	REPLY_OK,	/* a final reply with "ok": true */
	REPLY_FAIL,	/* any other final reply */
	REPLY_EVENT	/* an interim event, such as "blocking" */
};

int		 wire_connect(const char *, struct wire **);
void		 wire_close(struct wire *);
int		 wire_fd(const struct wire *);
int		 wire_write(struct wire *, const char *, size_t);
int		 wire_read_line(struct wire *, const char **, size_t *);
int		 wire_poll_line(struct wire *, const char **, size_t *);
enum reply_kind	 wire_reply_kind(const char *, size_t);
int		 wire_final_reply(struct wire *);
int		 wire_resp_command(struct wire *, int, const char **);
int		 wire_resp_reply(struct wire *, char *, long long *);

/* client.c: one lock client of any system, cycling one name. */
struct client;

const char	*sys_name(enum sys);
int		 client_open(const struct target *, enum sys, const char *,
		    struct client **);
int		 client_acquire(struct client *, int *);
int		 client_release(struct client *);
void		 client_close(struct client *);
int		 locks_line_acquire(char *, size_t, const char *);
int		 locks_line_release(char *, size_t, const char *);

/* load.c: scenarios 1 to 3, clients on threads cycling for a while. */
struct load_result {
	double		 rate;		/* cycles (or grants) per second */
	double		 p50_us;	/* cycle latency, or wait if shared */
	double		 p99_us;
	double		 fairness;	/* max/min grants per client */
	double		 cpu_us;	/* server CPU time per cycle */
};

int		 load_run(const struct target *, enum sys, pid_t, int, int,
		    double, struct load_result *);

/* scale.c: scenario 4, thousands of connections from one thread. */
struct scale_result {
	double		 rss_kib;	/* daemon RSS growth per client */
	double		 all_in_ms;	/* connect and grant all of them */
	double		 p50_us;	/* one more client's cycle */
	double		 p99_us;
};

struct queue_result {
	double		 enqueue_ms;	/* queue every waiter */
	double		 rate[QUEUE_BUCKETS];	/* handoffs/s, deep first */
	double		 total_rate;	/* handoffs/s over the whole drain */
};

int		 scale_hold(const struct target *, enum sys, pid_t, int,
		    struct scale_result *);
int		 scale_queue(const struct target *, pid_t, int,
		    struct queue_result *);
int		 scale_fd_room(int);

/* spawn.c: the servers measured, each private to this run. */
struct server {
	pid_t		 pid;
	char		 path[108];	/* its socket */
	char		 dir[4096];	/* its private directory */
};

int		 spawn_locksd(const char *, const char *, struct server *);
int		 spawn_redis(const char *, const char *, struct server *);
int		 spawn_echo(const char *, struct server *);
void		 server_stop(struct server *);
void		 spawn_kill_all(void);
int		 proc_pin(pid_t, int);
long		 proc_rss_kib(pid_t);
int64_t		 proc_cpu_ns(pid_t);

/* echo.c: the limit, a line server that does nothing but answer. */
int		 echo_main(const char *);

/* cli.c: scenario 5, whole-process wall time of the locks CLI. */
struct cli_result {
	double		 locks_ms;	/* median `locks run NAME true` */
	double		 flock_ms;	/* median `flock FILE true` */
};

int		 cli_run(const char *, const char *, const char *, int,
		    struct cli_result *);

/* locks-bench.c: options, the servers, and the order of scenarios. */
struct opts {
	const char	*locksd;	/* the locksd binary to start */
	const char	*locks_cli;	/* the locks CLI, for scenario 5 */
	const char	*redis;		/* redis-server, or NULL */
	const char	*locks_socket;	/* a running locksd to use instead */
	const char	*redis_socket;	/* a running Redis to use instead */
	const char	*echo_socket;	/* a running echo server instead */
	int		 quick;
	int		 runs;
	double		 secs;		/* per load measurement */
	int		 cli_runs;
	int		 waiters;
	int		 clients;	/* only this N in scenarios 2, 3 */
	int		 scale[MAX_SCALE];
	int		 nscale;
	unsigned	 scenarios;	/* bit n: scenario n */
	unsigned	 systems;	/* bit n: enum sys n */
};

/* The figures of one load (scenarios 1 to 3) for one system. */
struct load_figs {
	struct figure	 rate;		/* cycles or handoffs per second */
	struct figure	 p50;		/* µs: cycle, or wait if shared */
	struct figure	 p99;
	struct figure	 cpu;		/* server CPU µs per cycle */
	struct figure	 fair;		/* max/min grants per client */
	struct figure	 vs_redis;	/* rate over Redis's, same run */
	struct figure	 vs_echo;	/* rate over the limit's, same run */
	struct figure	 vs_own;	/* one name over own names, same N */
};

/* Every figure measured, one value per run. */
struct results {
	struct load_figs pinned[SYS_COUNT];	/* scenario 1 on one CPU */
	struct load_figs tput[NTPUT][SYS_COUNT];
	struct load_figs cont[NCONT][SYS_COUNT];
	struct load_figs cont_pinned[SYS_COUNT]; /* 16 on one name, one CPU */
	struct load_figs own_pinned[SYS_COUNT];	/* 16 own names, one CPU */
	struct figure	 rss[MAX_SCALE][SYS_COUNT];
	struct figure	 all_in[MAX_SCALE][SYS_COUNT];
	struct figure	 extra_p50[MAX_SCALE][SYS_COUNT];
	struct figure	 extra_p99[MAX_SCALE][SYS_COUNT];
	struct figure	 q_enqueue;
	struct figure	 q_rate[QUEUE_BUCKETS];
	struct figure	 q_total;
	struct figure	 cli_locks;
	struct figure	 cli_flock;
	struct figure	 cli_ratio;
	struct figure	 path_name;	/* scenario 6, cycles/s */
	struct figure	 path_path;
	struct figure	 path_cost;	/* path cycle time over name's */
};

struct bench {
	struct opts	 o;
	char		 dir[4096];	/* private, removed at exit */
	struct server	 locksd;
	struct server	 redis;
	struct server	 echo;
	struct target	 t;
	pid_t		 locksd_pid;
	struct results	 r;
};

int		 bench_restart_locksd(struct bench *);
int		 bench_restart_redis(struct bench *);
int		 bench_has(const struct bench *, enum sys);
void		 errx_bench(struct bench *, const char *, ...)
		    __attribute__((format(printf, 2, 3), noreturn));

/* scenario.c: each scenario's runs, alternating the systems. */
extern const int tput_clients[NTPUT];
extern const int cont_clients[NCONT];

void		 scenario_throughput(struct bench *);
void		 scenario_contention(struct bench *);
void		 scenario_scale(struct bench *);
void		 scenario_queue(struct bench *);
void		 scenario_cli(struct bench *);

/* paths.c: scenario 6, a path lock's cycle beside a name lock's. */
void		 scenario_paths(struct bench *);

/* report.c: the Markdown tables. */
void		 report_intro(const struct bench *);
void		 report_single(const struct bench *);
void		 report_throughput(const struct bench *);
void		 report_contention(const struct bench *);
void		 report_scale(const struct bench *);
void		 report_queue(const struct bench *);
void		 report_cli(const struct bench *);
void		 report_targets(const struct bench *);

#endif /* LOCKS_BENCH_H */
