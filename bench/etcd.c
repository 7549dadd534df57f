/*
 * locks-etcd-bench: cluster locks through locksd, side by side with a
 * direct client of the same etcd through the same JSON gateway.
 *
 * usage: locks-etcd-bench ETCD_URL SOCKET [SOCKET2] [SECONDS]
 *
 * - cycle: lock+unlock cycles/s of one liblocks client through locksd
 *   ("scope":"cluster"), then of a direct gateway client with a reused
 *   lease doing the same recipe (a txn of put+range, a guarded delete),
 *   then of etcd's own /v3/lock/lock + /v3/lock/unlock;
 * - handoff: with SOCKET2 (a second locksd on the same etcd), 2 and 16
 *   clients on one name, split across the two daemons: the time from a
 *   release to the next grant, p50 and p99; then as many direct clients
 *   of etcd's own /v3/lock/lock (a lease each), side by side.
 */

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <json-c/json.h>

#include "locks.h"

#define MAX_SAMPLES	200000

static double
now(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* One blocking POST through evhttp; the reply parsed, or NULL. */
struct post {
	struct event_base	*base;
	struct json_object	*reply;
};

static void
post_done(struct evhttp_request *req, void *arg)
{
	struct post	*p = arg;
	struct evbuffer	*in;

	if (req != NULL && evhttp_request_get_response_code(req) == 200) {
		in = evhttp_request_get_input_buffer(req);
		p->reply = json_tokener_parse((const char *)evbuffer_pullup(in,
		    -1));
	}
	event_base_loopbreak(p->base);
}

static struct json_object *
post(struct event_base *base, struct evhttp_connection *conn,
    const char *host, const char *path, const char *body)
{
	struct post		 p = { base, NULL };
	struct evhttp_request	*req;

	req = evhttp_request_new(post_done, &p);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Host",
	    host);
	evbuffer_add(evhttp_request_get_output_buffer(req), body,
	    strlen(body));
	evhttp_make_request(conn, req, EVHTTP_REQ_POST, path);
	event_base_dispatch(base);
	return p.reply;
}

static const char *
field(struct json_object *obj, const char *key)
{
	struct json_object	*v;

	return json_object_object_get_ex(obj, key, &v) ?
	    json_object_get_string(v) : "";
}

/* Cycles/s of the direct client: our recipe, or etcd's lock API. */
static double
direct_cycles(const char *host, int port, double seconds, int lock_api)
{
	struct event_base	*base = event_base_new();
	struct evhttp_connection *conn;
	struct json_object	*r, *resp, *kv;
	char			 body[1024], lease[32], key[128];
	double			 end;
	long			 n = 0;

	conn = evhttp_connection_base_new(base, NULL, host,
	    (unsigned short)port);
	r = post(base, conn, host, "/v3/lease/grant", "{\"TTL\":30}");
	snprintf(lease, sizeof lease, "%s", field(r, "ID"));
	json_object_put(r);
	end = now() + seconds;
	while (now() < end) {
		if (lock_api) {
			/* "benchlock" in base64. */
			snprintf(body, sizeof body,
			    "{\"name\":\"YmVuY2hsb2Nr\",\"lease\":\"%s\"}",
			    lease);
			r = post(base, conn, host, "/v3/lock/lock", body);
			snprintf(body, sizeof body, "{\"key\":\"%s\"}",
			    field(r, "key"));
			json_object_put(r);
			json_object_put(post(base, conn, host,
			    "/v3/lock/unlock", body));
			n++;
			continue;
		}
		/* /bench/d/ and /bench/d0, the range of its keys. */
		snprintf(key, sizeof key, "L2JlbmNoL2Qv%08lx", n);
		snprintf(body, sizeof body, "{\"success\":[{\"request_put\":"
		    "{\"key\":\"%s\",\"value\":\"e30=\",\"lease\":\"%s\"}},"
		    "{\"request_range\":{\"key\":\"L2JlbmNoL2Qv\","
		    "\"range_end\":\"L2JlbmNoL2Qw\",\"sort_order\":\"ASCEND\","
		    "\"sort_target\":\"CREATE\"}}]}", key, lease);
		r = post(base, conn, host, "/v3/kv/txn", body);
		resp = json_object_array_get_idx(json_object_object_get(r,
		    "responses"), 1);
		kv = json_object_array_get_idx(json_object_object_get(
		    json_object_object_get(resp, "response_range"), "kvs"), 0);
		snprintf(body, sizeof body, "{\"compare\":[{\"key\":\"%s\","
		    "\"target\":\"CREATE\",\"result\":\"EQUAL\","
		    "\"create_revision\":\"%s\"}],\"success\":"
		    "[{\"request_delete_range\":{\"key\":\"%s\"}}]}", key,
		    field(kv, "create_revision"), key);
		json_object_put(r);
		json_object_put(post(base, conn, host, "/v3/kv/txn", body));
		n++;
	}
	evhttp_connection_free(conn);
	event_base_free(base);
	return n / seconds;
}

/* Cycles/s of one liblocks client through locksd. */
static double
daemon_cycles(const char *sock, double seconds)
{
	struct locks_acquire_opts opts = LOCKS_ACQUIRE_OPTS_INIT;
	locks_conn		*conn;
	double			 end;
	long			 n = 0;

	opts.scope = LOCKS_CLUSTER;
	if (locks_connect(sock, "etcd-bench", &conn) != LOCKS_OK) {
		fprintf(stderr, "cannot connect to %s\n", sock);
		exit(1);
	}
	end = now() + seconds;
	while (now() < end) {
		if (locks_acquire(conn, "bench-cycle", &opts, NULL) !=
		    LOCKS_OK ||
		    locks_release(conn, "bench-cycle") != LOCKS_OK) {
			fprintf(stderr, "cycle: %s\n",
			    locks_last_message(conn));
			exit(1);
		}
		n++;
	}
	locks_close(conn);
	return n / seconds;
}

/* The handoff run: each thread takes, notes, lets go, over and over. */
struct handoff {
	const char	*sock;
	const char	*host;		/* the direct clients' etcd */
	int		 port;
	double		 end;
	pthread_mutex_t	*mu;
	double		*released;	/* when the last holder let go */
	double		*samples;
	size_t		*nsamples;
};

/* Note one grant's handoff time, and the release about to follow. */
static void
handoff_note(struct handoff *h, double granted)
{
	pthread_mutex_lock(h->mu);
	if (*h->released > 0 && *h->nsamples < MAX_SAMPLES)
		h->samples[(*h->nsamples)++] = granted - *h->released;
	*h->released = now();
	pthread_mutex_unlock(h->mu);
}

/* A direct client of etcd's lock API, with a lease of its own. */
static void *
handoff_lock_api_thread(void *arg)
{
	struct handoff		*h = arg;
	struct event_base	*base = event_base_new();
	struct evhttp_connection *conn;
	struct json_object	*r;
	char			 body[256], lease[32];

	conn = evhttp_connection_base_new(base, NULL, h->host,
	    (unsigned short)h->port);
	r = post(base, conn, h->host, "/v3/lease/grant", "{\"TTL\":30}");
	snprintf(lease, sizeof lease, "%s", field(r, "ID"));
	json_object_put(r);
	while (now() < h->end) {
		/* "benchhandoff" in base64. */
		snprintf(body, sizeof body, "{\"name\":\"YmVuY2hoYW5kb2Zm\","
		    "\"lease\":\"%s\"}", lease);
		if ((r = post(base, conn, h->host, "/v3/lock/lock",
		    body)) == NULL)
			break;
		handoff_note(h, now());
		snprintf(body, sizeof body, "{\"key\":\"%s\"}",
		    field(r, "key"));
		json_object_put(r);
		json_object_put(post(base, conn, h->host, "/v3/lock/unlock",
		    body));
	}
	snprintf(body, sizeof body, "{\"ID\":\"%s\"}", lease);
	json_object_put(post(base, conn, h->host, "/v3/lease/revoke", body));
	evhttp_connection_free(conn);
	event_base_free(base);
	return NULL;
}

/* A liblocks client of one of the two daemons. */
static void *
handoff_thread(void *arg)
{
	struct handoff		*h = arg;
	struct locks_acquire_opts opts = LOCKS_ACQUIRE_OPTS_INIT;
	locks_conn		*conn;

	opts.scope = LOCKS_CLUSTER;
	if (locks_connect(h->sock, "etcd-bench", &conn) != LOCKS_OK)
		return NULL;
	while (now() < h->end) {
		if (locks_acquire(conn, "bench-handoff", &opts, NULL) !=
		    LOCKS_OK)
			break;
		handoff_note(h, now());
		if (locks_release(conn, "bench-handoff") != LOCKS_OK)
			break;
	}
	locks_close(conn);
	return NULL;
}

static int
double_cmp(const void *a, const void *b)
{
	double	 x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/*
 * One handoff run of nclients on one name: through the two daemons, or
 * (sock1 NULL) as direct clients of etcd's lock API at host:port.
 */
static void
handoff_run(const char *sock1, const char *sock2, const char *host,
    int port, int nclients, double seconds)
{
	static double	 samples[MAX_SAMPLES];
	pthread_t	 threads[64];
	pthread_mutex_t	 mu = PTHREAD_MUTEX_INITIALIZER;
	double		 released = 0;
	size_t		 nsamples = 0;
	struct handoff	 h[64];
	int		 i;

	for (i = 0; i < nclients; i++) {
		h[i] = (struct handoff){ i % 2 ? sock2 : sock1, host, port,
		    now() + seconds, &mu, &released, samples, &nsamples };
		pthread_create(&threads[i], NULL, sock1 != NULL ?
		    handoff_thread : handoff_lock_api_thread, &h[i]);
	}
	for (i = 0; i < nclients; i++)
		pthread_join(threads[i], NULL);
	qsort(samples, nsamples, sizeof *samples, double_cmp);
	if (nsamples == 0)
		return;
	printf("handoff %-24s %2d clients: %zu handoffs, p50 %.2f ms, "
	    "p99 %.2f ms\n", sock1 != NULL ? "(locksd, two daemons)" :
	    "(etcd /v3/lock/lock)", nclients, nsamples,
	    samples[nsamples / 2] * 1e3,
	    samples[nsamples * 99 / 100] * 1e3);
}

int
main(int argc, char **argv)
{
	char	 host[256];
	int	 port;
	double	 seconds = argc > 4 ? atof(argv[4]) : 5;

	if (argc < 3 || sscanf(argv[1], "http://%255[^:]:%d", host,
	    &port) != 2) {
		fprintf(stderr, "usage: locks-etcd-bench http://HOST:PORT "
		    "SOCKET [SOCKET2] [SECONDS]\n");
		return 2;
	}
	printf("cycle through locksd (liblocks): %.0f/s\n",
	    daemon_cycles(argv[2], seconds));
	printf("cycle direct (same recipe, reused lease): %.0f/s\n",
	    direct_cycles(host, port, seconds, 0));
	printf("cycle direct (/v3/lock/lock + unlock): %.0f/s\n",
	    direct_cycles(host, port, seconds, 1));
	if (argc > 3 && strcmp(argv[3], "-") != 0) {
		handoff_run(argv[2], argv[3], host, port, 2, seconds);
		handoff_run(NULL, NULL, host, port, 2, seconds);
		handoff_run(argv[2], argv[3], host, port, 16, seconds);
		handoff_run(NULL, NULL, host, port, 16, seconds);
	}
	return 0;
}
