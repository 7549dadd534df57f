/*
 * locksd: the named-lock broker.  Parses options, picks the socket and
 * lock directory, and runs the event loop until SIGTERM or SIGINT.
 */

#include <sys/resource.h>
#include <sys/stat.h>

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "daemon.h"
#include "etcd.h"

#define DEFAULT_MAX_LOCKS_PER_CLIENT	4096
#define DEFAULT_MAX_CLIENTS		10000
#define DEFAULT_MAX_CLIENTS_PER_UID	1024
#define DEFAULT_MAX_LOCK_FILES		65536
#define DEFAULT_ETCD_PREFIX		"/locks/"
#define DEFAULT_ETCD_TTL		10
#define DEFAULT_ETCD_MAX_WAITS		1024
#define DEFAULT_METRICS_INTERVAL	5

static void
usage(FILE *out)
{
	fprintf(out,
	    "usage: locksd [--socket PATH] [--lock-dir DIR] [-v|--verbose]\n"
	    "              [--max-clients N] [--max-clients-per-uid N]\n"
	    "              [--max-locks-per-client N] [--max-lock-files N]\n"
	    "              [--allow-user USER]... [--allow-group GROUP]...\n"
	    "              [--etcd URL[,URL...]] [--etcd-prefix PREFIX]\n"
	    "              [--etcd-ttl SECS] [--etcd-max-waits N]\n"
	    "              [--node NAME]\n"
	    "              [--metrics-file PATH] [--metrics-interval SECS]\n"
	    "              [--version] [--help]\n"
	    "\n"
	    "  --socket PATH   listen on PATH (default: $LOCKS_SOCKET, else\n"
	    "                  /run/locksd/locksd.sock as root, else\n"
	    "                  $XDG_RUNTIME_DIR/locksd/locksd.sock, else\n"
	    "                  /tmp/locksd-$UID/locksd.sock); under socket\n"
	    "                  activation (LISTEN_FDS) the inherited sockets\n"
	    "                  are served instead\n"
	    "  --lock-dir DIR  lock files live here (default: locks/ beside "
	    "the socket);\n"
	    "                  one daemon per lock dir; it and the socket's\n"
	    "                  directory must be owned by us or root; others\n"
	    "                  may not write to the lock dir, nor to the\n"
	    "                  socket's unless it is sticky\n"
	    "  --max-clients N connections served at once (default %d); one\n"
	    "                  more gets a limit error and is closed\n"
	    "  --max-clients-per-uid N\n"
	    "                  the same, per user (peer uid; default %d)\n"
	    "  --max-locks-per-client N\n"
	    "                  names one connection may hold or await at once\n"
	    "                  (default %d)\n"
	    "  --max-lock-files N\n"
	    "                  lock files the lock dir may hold; past it only\n"
	    "                  names whose file exists can be acquired\n"
	    "                  (default %d)\n"
	    "  --allow-user USER, --allow-group GROUP\n"
	    "                  only these users (by uid) and groups (primary or\n"
	    "                  supplementary) may connect, by name or number;\n"
	    "                  repeatable; default: anyone who can reach the\n"
	    "                  socket\n"
	    "  --etcd URL[,URL...]\n"
	    "                  serve cluster locks (\"scope\":\"cluster\") as\n"
	    "                  keys in this etcd cluster: the members' client\n"
	    "                  URLs, http://HOST:PORT, tried in turn\n"
	    "  --etcd-prefix PREFIX\n"
	    "                  the keys' prefix in etcd (default %s)\n"
	    "  --etcd-ttl SECS the daemon's lease TTL (default %d); a holder\n"
	    "                  whose keepalives fail that long gets \"lost\"\n"
	    "  --etcd-max-waits N\n"
	    "                  cluster locks held or awaited at once on this\n"
	    "                  daemon, each a key and maybe a watch\n"
	    "                  (default %d)\n"
	    "  --node NAME     this machine as other nodes' lists show it\n"
	    "                  (default: the hostname)\n"
	    "  --metrics-file PATH\n"
	    "                  write the metrics, as Prometheus text, to PATH\n"
	    "                  (for node_exporter's textfile collector),\n"
	    "                  replaced whole every --metrics-interval; its\n"
	    "                  directory must exist\n"
	    "  --metrics-interval SECS\n"
	    "                  seconds between rewrites (default %d)\n"
	    "  -v, --verbose   log every connection\n"
	    "  --version       print the version and exit\n"
	    "  --help          print this help and exit\n",
	    DEFAULT_MAX_CLIENTS, DEFAULT_MAX_CLIENTS_PER_UID,
	    DEFAULT_MAX_LOCKS_PER_CLIENT, DEFAULT_MAX_LOCK_FILES,
	    DEFAULT_ETCD_PREFIX, DEFAULT_ETCD_TTL, DEFAULT_ETCD_MAX_WAITS,
	    DEFAULT_METRICS_INTERVAL);
}

/* Check the --etcd options, fill in the node's default; exit if bad. */
static void
etcd_config_finish(struct etcd_config *etcd, char *host, size_t host_size)
{
	if (etcd->endpoints == NULL)
		return;
	if (etcd->prefix[0] != '/' || strlen(etcd->prefix) >= ETCD_PREFIX_MAX) {
		fprintf(stderr, "locksd: --etcd-prefix must start with '/' and "
		    "be shorter than %d bytes\n", ETCD_PREFIX_MAX);
		exit(2);
	}
	if (etcd->ttl < 3 || etcd->ttl > 3600) {
		fprintf(stderr, "locksd: --etcd-ttl takes 3 to 3600 seconds\n");
		exit(2);
	}
	if (etcd->node == NULL) {
		if (gethostname(host, host_size) == -1)
			snprintf(host, host_size, "localhost");
		host[host_size - 1] = '\0';
		etcd->node = host;
	}
	if (etcd->node[0] == '\0' || strlen(etcd->node) >= ETCD_NODE_MAX) {
		fprintf(stderr, "locksd: --node takes 1 to %d bytes\n",
		    ETCD_NODE_MAX - 1);
		exit(2);
	}
}

/* Parse a positive count option, or exit with a usage error. */
static size_t
parse_count(const char *text)
{
	char		*end;
	unsigned long	 value;

	errno = 0;
	value = strtoul(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0' || value == 0 ||
	    value > 1000000 || text[0] == '-') {
		fprintf(stderr, "locksd: not a count from 1 to 1000000: %s\n",
		    text);
		exit(2);
	}
	return value;
}

/* Add an --allow-user or --allow-group rule, or exit with a usage error. */
static void
allow(struct server_config *config, const char *who,
    int (*add)(struct access *, const char *), const char *what)
{
	if (config->access == NULL)
		config->access = access_new();
	if (add(config->access, who) == -1) {
		fprintf(stderr, "locksd: no such %s: %s\n", what, who);
		exit(2);
	}
}

/* Every lock and every client costs a descriptor: use all we may have. */
static void
raise_fd_limit(void)
{
	struct rlimit	 rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
			log_warn("setrlimit");
	}
}

/*
 * Create the socket's directory if it is missing (one level only): 0700
 * for a user's own daemon, 0755 for root's, which flock(1) users reach.
 */
static void
make_parent_dir(const char *path)
{
	char	 dir[PATH_MAX];

	server_parent_dir(path, dir, sizeof dir);
	if (strcmp(dir, ".") == 0 || strcmp(dir, "/") == 0)
		return;
	if (mkdir(dir, geteuid() == 0 ? 0755 : 0700) == -1 && errno != EEXIST)
		fatal("mkdir %s", dir);
}

/* The socket: an inherited one's path, else the default rule's. */
static void
default_socket(const int *listen_fds, size_t nlisten_fds, char *buf,
    size_t size)
{
	if (nlisten_fds > 0 &&
	    systemd_socket_path(listen_fds[0], buf, size) == 0)
		return;
	if (proto_default_socket(buf, size) >= (int)size)
		fatalx("default socket path too long");
}

/* The lock dir defaults to locks/ beside the socket. */
static void
default_lock_dir(const char *socket_path, char *buf, size_t size)
{
	const char	*slash = strrchr(socket_path, '/');
	int		 dirlen;

	dirlen = slash == NULL ? 0 : (int)(slash - socket_path);
	if (slash == NULL)
		snprintf(buf, size, "locks");
	else if (snprintf(buf, size, "%.*s/locks", dirlen, socket_path) >=
	    (int)size)
		fatalx("path too long: %s", socket_path);
}

/* Empty the descriptor store of what this instance took from it. */
static void
forget_cb(evutil_socket_t fd, short events, void *arg)
{
	(void)fd;
	(void)events;
	(void)arg;
	reload_store_forget();
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "lock-dir", required_argument, NULL, 'd' },
		{ "max-locks-per-client", required_argument, NULL, 'L' },
		{ "max-clients", required_argument, NULL, 'C' },
		{ "max-clients-per-uid", required_argument, NULL, 'P' },
		{ "max-lock-files", required_argument, NULL, 'F' },
		{ "allow-user", required_argument, NULL, 'U' },
		{ "allow-group", required_argument, NULL, 'G' },
		{ "etcd", required_argument, NULL, 'E' },
		{ "etcd-prefix", required_argument, NULL, 'X' },
		{ "etcd-ttl", required_argument, NULL, 'T' },
		{ "etcd-max-waits", required_argument, NULL, 'W' },
		{ "node", required_argument, NULL, 'N' },
		{ "metrics-file", required_argument, NULL, 'M' },
		{ "metrics-interval", required_argument, NULL, 'I' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct server_config	 config = {
		.max_locks_per_client = DEFAULT_MAX_LOCKS_PER_CLIENT,
		.max_clients = DEFAULT_MAX_CLIENTS,
		.max_clients_per_uid = DEFAULT_MAX_CLIENTS_PER_UID,
		.max_lock_files = DEFAULT_MAX_LOCK_FILES,
		.metrics_interval = DEFAULT_METRICS_INTERVAL,
	};
	struct etcd_config	 etcd = {
		.prefix = DEFAULT_ETCD_PREFIX,
		.ttl = DEFAULT_ETCD_TTL,
		.max_waits = DEFAULT_ETCD_MAX_WAITS,
	};
	char			 host_buf[256];
	struct event_base	*base;
	struct server		*srv;
	struct snap		 snap;
	char			 socket_buf[PATH_MAX], lock_dir_buf[PATH_MAX];
	int			*listen_fds = NULL;
	int			 ch, verbose = 0, status, restored;
	char			**args;

	/* getopt may reorder argv: a reload starts the daemon as it was. */
	if ((args = calloc(argc + 1, sizeof *args)) == NULL)
		return 1;
	memcpy(args, argv, argc * sizeof *args);
	reload_init(args);
	while ((ch = getopt_long(argc, argv, "v", longopts, NULL)) != -1) {
		switch (ch) {
		case 's':
			config.socket_path = optarg;
			break;
		case 'd':
			config.lock_dir = optarg;
			break;
		case 'L':
			config.max_locks_per_client = parse_count(optarg);
			break;
		case 'C':
			config.max_clients = parse_count(optarg);
			break;
		case 'P':
			config.max_clients_per_uid = parse_count(optarg);
			break;
		case 'F':
			config.max_lock_files = parse_count(optarg);
			break;
		case 'U':
			allow(&config, optarg, access_allow_user, "user");
			break;
		case 'G':
			allow(&config, optarg, access_allow_group, "group");
			break;
		case 'E':
			etcd.endpoints = optarg;
			break;
		case 'X':
			etcd.prefix = optarg;
			break;
		case 'T':
			etcd.ttl = (int)parse_count(optarg);
			break;
		case 'W':
			etcd.max_waits = parse_count(optarg);
			break;
		case 'N':
			etcd.node = optarg;
			break;
		case 'M':
			config.metrics_file = optarg;
			break;
		case 'I':
			if ((config.metrics_interval = parse_count(optarg)) >
			    3600) {
				fprintf(stderr, "locksd: --metrics-interval "
				    "takes 1 to 3600 seconds\n");
				return 2;
			}
			break;
		case 'v':
			verbose = 1;
			break;
		case 'V':
			printf("locksd %s (protocol %d)\n", LOCKSD_VERSION,
			    PROTO_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	etcd_config_finish(&etcd, host_buf, sizeof host_buf);
	config.etcd = etcd.endpoints != NULL ? &etcd : NULL;
	log_init(verbose);
	/*
	 * Socket activation: serve the sockets systemd passed, bind none;
	 * and a reload's or restart's state, if one was handed over.
	 */
	restored = reload_startup(&snap, &listen_fds, &config.nlisten_fds);
	config.listen_fds = listen_fds;
	config.restore = restored ? &snap : NULL;
	if (config.socket_path == NULL) {
		default_socket(listen_fds, config.nlisten_fds, socket_buf,
		    sizeof socket_buf);
		config.socket_path = socket_buf;
	}
	if (config.lock_dir == NULL) {
		default_lock_dir(config.socket_path, lock_dir_buf,
		    sizeof lock_dir_buf);
		config.lock_dir = lock_dir_buf;
	}
	raise_fd_limit();
	/* Lock files are 0644 and the lock dir 0755, whatever we inherit. */
	umask(022);
	if (config.nlisten_fds == 0 && !restored)
		make_parent_dir(config.socket_path);

	if ((base = event_base_new()) == NULL)
		fatalx("event_base_new failed");
	srv = server_new(base, &config);
	state_free(&snap);
	/* After the first replies: the gap is what clients wait through. */
	event_base_once(base, -1, EV_TIMEOUT, forget_cb, NULL,
	    &(struct timeval){ 0, 0 });
	event_base_dispatch(base);
	reload_store_forget_wait();
	status = server_failed(srv) ? 1 : 0;
	server_free(srv);
	access_free(config.access);
	event_base_free(base);
	free(listen_fds);
	free(args);
	log_info("stopped");
	return status;
}
