/*
 * libFuzzer target: arbitrary bytes, split into arbitrary reads over two
 * connections, go through the daemon's real request path (framing in
 * conn.c, the parser and dispatch in session.c, and the lock table) over a
 * socketpair, with a fake clock and no listening socket.
 *
 * Input format: records of one control byte and its data.  The control
 * byte's low bit picks the connection; the rest is the chunk length - 1.
 * Both connections close at the end, so a leak or a lock left behind by a
 * closed connection shows up (LeakSanitizer, and the assert below).
 * Everything the daemon writes must be whole lines, each one JSON object
 * in valid UTF-8, as a strict parser reads it; else abort.
 */

#include <sys/socket.h>

#include <dirent.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "daemon.h"

#define FUZZ_CONNS	2

void	clock_fake_advance(double);	/* fake_clock.c */

static struct event_base	*base;
static struct server		*srv;
static char			 lock_dir[] = "/tmp/locks-fuzz-XXXXXX";
static struct json_tokener	*tok;

/* What the daemon wrote to one client and is not yet a whole line. */
struct output {
	char	*buf;
	size_t	 len;
	size_t	 size;
};

static struct output		 outputs[FUZZ_CONNS];

/* One line the daemon sent must be a JSON object in valid UTF-8. */
static void
check_line(const char *line, size_t len)
{
	struct json_object	*obj;

	if (!proto_utf8_valid(line, len) ||
	    proto_parse_line(tok, line, len, &obj) == -1)
		abort();
	if (!json_object_is_type(obj, json_type_object))
		abort();
	json_object_put(obj);
}

/* Check the whole lines in out, keeping the rest for later. */
static void
check_output(struct output *out)
{
	char	*line = out->buf, *nl;
	size_t	 left = out->len;

	while ((nl = memchr(line, '\n', left)) != NULL) {
		check_line(line, (size_t)(nl - line));
		left -= (size_t)(nl - line) + 1;
		line = nl + 1;
	}
	memmove(out->buf, line, left);
	out->len = left;
}

/* Read what the daemon answers and check it line by line. */
static void
client_drain(int fd, struct output *out)
{
	ssize_t	 n;

	for (;;) {
		if (out->size - out->len < 65536) {
			out->size = out->size * 2 + 65536;
			if ((out->buf = realloc(out->buf, out->size)) == NULL)
				abort();
		}
		if ((n = read(fd, out->buf + out->len,
		    out->size - out->len)) <= 0)
			break;
		out->len += (size_t)n;
		check_output(out);
	}
}

/* Send a chunk; what the socket will not take now is dropped. */
static void
client_send(int fd, const uint8_t *data, size_t len)
{
	ssize_t	 n;

	while (len > 0 && (n = send(fd, data, len, MSG_NOSIGNAL)) > 0) {
		data += n;
		len -= (size_t)n;
	}
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
	if ((tok = proto_tokener_new()) == NULL)
		abort();
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

/* Open one connection into the daemon; return the client's end. */
static int
fuzz_connect(int i)
{
	struct peer	 peer = { 1000 + i, 1000, 1000 };
	int		 pair[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
	    pair) == -1)
		abort();
	if (session_new(server_sessions(srv), pair[1], &peer, 0) == NULL)
		abort();
	return pair[0];
}

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int		 client[FUZZ_CONNS];
	size_t		 i, len;
	int		 c;

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
		client_send(client[c], data + i, len);
		clock_fake_advance(0.01);
		event_base_loop(base, EVLOOP_NONBLOCK);
		for (c = 0; c < FUZZ_CONNS; c++)
			client_drain(client[c], &outputs[c]);
	}
	/* EOF on each connection, let the daemon react, then close ours. */
	for (c = 0; c < FUZZ_CONNS; c++) {
		shutdown(client[c], SHUT_WR);
		event_base_loop(base, EVLOOP_NONBLOCK);
		client_drain(client[c], &outputs[c]);
		event_base_loop(base, EVLOOP_NONBLOCK);
		client_drain(client[c], &outputs[c]);
		close(client[c]);
		/* Nothing the daemon wrote may end mid-line. */
		if (outputs[c].len != 0)
			abort();
	}
	/* The daemon sees the hang-up and frees both connections. */
	for (i = 0; i < 4 && server_nconns(srv) > 0; i++)
		event_base_loop(base, EVLOOP_NONBLOCK);
	if (server_nconns(srv) > 0)
		abort();
	/* Closed connections leave nothing held and nothing waiting. */
	if (locktab_nheld(server_locktab(srv)) != 0 ||
	    locktab_nwaiting(server_locktab(srv)) != 0)
		abort();
	return 0;
}
