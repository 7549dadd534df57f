/*
 * libFuzzer target: arbitrary bytes, split into arbitrary reads over two
 * connections, go through the daemon's real request path (framing in
 * conn.c, the parser, dispatch in request.c, and the lock table) on an
 * in-memory bufferevent pair, with a fake clock and no sockets.
 *
 * Input format: records of one control byte and its data.  The control
 * byte's low bit picks the connection; the rest is the chunk length - 1.
 * Both connections close at the end, so a leak or a lock left behind by a
 * closed connection shows up (LeakSanitizer, and the assert below).
 */

#include <dirent.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "daemon.h"

#define FUZZ_CONNS	2

void	clock_fake_advance(double);	/* fake_clock.c */

static struct event_base	*base;
static struct server		*srv;
static char			 lock_dir[] = "/tmp/locks-fuzz-XXXXXX";

/* Drop whatever the daemon answers: only its behaviour matters here. */
static void
client_read_cb(struct bufferevent *bev, void *arg)
{
	struct evbuffer	*input = bufferevent_get_input(bev);

	(void)arg;
	evbuffer_drain(input, evbuffer_get_length(input));
}

/* Remove the lock directory and the lock files the inputs made. */
static void
fuzz_cleanup(void)
{
	struct dirent	*de;
	DIR		*dir;

	if ((dir = opendir(lock_dir)) == NULL)
		return;
	while ((de = readdir(dir)) != NULL) {
		if (de->d_name[0] != '.' || strcmp(de->d_name, ".tokens") == 0)
			unlinkat(dirfd(dir), de->d_name, 0);
	}
	closedir(dir);
	rmdir(lock_dir);
}

/* Set up a daemon with no socket, on a fresh lock directory, once. */
static void
fuzz_init(void)
{
	struct server_config	 config;

	log_init(0);
	if (mkdtemp(lock_dir) == NULL)
		abort();
	atexit(fuzz_cleanup);
	memset(&config, 0, sizeof config);
	config.lock_dir = lock_dir;
	config.max_locks_per_client = 64;
	config.max_clients = 16;
	if ((base = event_base_new()) == NULL)
		abort();
	srv = server_new(base, &config);
}

/* Open one in-memory connection into the daemon. */
static struct bufferevent *
fuzz_connect(int i)
{
	struct bufferevent	*pair[2];
	struct peer		 peer = { 1000 + i, 1000, 1000 };

	if (bufferevent_pair_new(base, 0, pair) == -1)
		abort();
	bufferevent_setcb(pair[0], client_read_cb, NULL, NULL, NULL);
	bufferevent_enable(pair[0], EV_READ | EV_WRITE);
	if (conn_new(srv, pair[1], &peer) == NULL)
		abort();
	return pair[0];
}

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct bufferevent	*client[FUZZ_CONNS];
	size_t			 i, len;
	int			 c;

	if (srv == NULL)
		fuzz_init();
	for (c = 0; c < FUZZ_CONNS; c++)
		client[c] = fuzz_connect(c);
	for (i = 0; i < size; i += len) {
		c = data[i] & 1;
		len = (size_t)(data[i] >> 1) + 1;
		i++;
		if (len > size - i)
			len = size - i;
		bufferevent_write(client[c], data + i, len);
		clock_fake_advance(0.01);
		event_base_loop(base, EVLOOP_NONBLOCK);
	}
	/* EOF on each connection, let the daemon react, then free our end. */
	for (c = 0; c < FUZZ_CONNS; c++) {
		bufferevent_flush(client[c], EV_WRITE, BEV_FINISHED);
		event_base_loop(base, EVLOOP_NONBLOCK);
		event_base_loop(base, EVLOOP_NONBLOCK);
		bufferevent_free(client[c]);
	}
	/* Closed connections leave nothing held and nothing waiting. */
	if (locktab_nheld(server_locktab(srv)) != 0 ||
	    locktab_nwaiting(server_locktab(srv)) != 0)
		abort();
	return 0;
}
