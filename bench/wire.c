/*
 * A blocking, buffered client connection to a Unix socket, with what the
 * bench needs of two line protocols: locksd's JSON lines (told apart by
 * a light scan, not a parse) and a minimal RESP client for Redis.
 */

#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

#define WIRE_BUF	4096	/* longest line the bench expects */
#define RESP_MAX	512	/* longest command the bench sends */

struct wire {
	int		 fd;
	size_t		 off;		/* start of the unread bytes */
	size_t		 len;		/* end of the bytes read */
	char		 buf[WIRE_BUF];
};

/* Connect to a Unix socket; -1 with errno set on failure. */
int
wire_connect(const char *path, struct wire **ret_wire)
{
	struct sockaddr_un	 sun;
	struct wire		*w;
	int			 fd, saved;

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof sun.sun_path) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(sun.sun_path, path, strlen(path));
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return -1;
	if (connect(fd, (struct sockaddr *)&sun, sizeof sun) == -1 ||
	    (w = calloc(1, sizeof *w)) == NULL) {
		saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	w->fd = fd;
	*ret_wire = w;
	return 0;
}

/* Close the connection; NULL is fine. */
void
wire_close(struct wire *w)
{
	if (w == NULL)
		return;
	close(w->fd);
	free(w);
}

/* The connection's socket. */
int
wire_fd(const struct wire *w)
{
	return w->fd;
}

/* Write all of buf; -1 if the peer is gone. */
int
wire_write(struct wire *w, const char *buf, size_t len)
{
	ssize_t	 n;

	while (len > 0) {
		n = send(w->fd, buf, len, MSG_NOSIGNAL);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * Return the next line (without its LF): 1 with a line, 0 if none is
 * complete and recv would block (flags has MSG_DONTWAIT), -1 on EOF,
 * error or a line longer than the buffer.
 */
static int
wire_next_line(struct wire *w, int flags, const char **ret_line,
    size_t *ret_len)
{
	char	*nl;
	ssize_t	 n;

	for (;;) {
		nl = w->len > w->off ? memchr(w->buf + w->off, '\n',
		    w->len - w->off) : NULL;
		if (nl != NULL) {
			*ret_line = w->buf + w->off;
			*ret_len = (size_t)(nl - *ret_line);
			w->off = (size_t)(nl - w->buf) + 1;
			return 1;
		}
		if (w->off > 0) {
			memmove(w->buf, w->buf + w->off, w->len - w->off);
			w->len -= w->off;
			w->off = 0;
		}
		if (w->len == sizeof w->buf)
			return -1;
		n = recv(w->fd, w->buf + w->len, sizeof w->buf - w->len,
		    flags);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (n <= 0)
			return -1;
		w->len += (size_t)n;
	}
}

/* Read the next line, waiting for it; -1 on EOF or error. */
int
wire_read_line(struct wire *w, const char **ret_line, size_t *ret_len)
{
	return wire_next_line(w, 0, ret_line, ret_len) == 1 ? 0 : -1;
}

/* Return the next line if one is complete: 1, 0 if not yet, -1 if gone. */
int
wire_poll_line(struct wire *w, const char **ret_line, size_t *ret_len)
{
	return wire_next_line(w, MSG_DONTWAIT, ret_line, ret_len);
}

/* Find needle in the line; the line is not NUL-terminated. */
static const char *
line_find(const char *line, size_t len, const char *needle)
{
	return memmem(line, len, needle, strlen(needle));
}

/*
 * Tell a locksd reply line apart without parsing it: an event has an
 * "event" key, a success has "ok" set to true.  The bench names its own
 * locks, so no string value can fake either key.
 */
enum reply_kind
wire_reply_kind(const char *line, size_t len)
{
	const char	*p, *end = line + len;

	if (line_find(line, len, "\"event\"") != NULL)
		return REPLY_EVENT;
	if ((p = line_find(line, len, "\"ok\"")) == NULL)
		return REPLY_FAIL;
	for (p += 4; p < end && (*p == ' ' || *p == ':'); p++)
		;
	if ((size_t)(end - p) >= 4 && memcmp(p, "true", 4) == 0)
		return REPLY_OK;
	return REPLY_FAIL;
}

/* Read locksd lines up to a final reply: 0 if it is ok, -1 otherwise. */
int
wire_final_reply(struct wire *w)
{
	const char	*line;
	size_t		 len;

	for (;;) {
		if (wire_read_line(w, &line, &len) == -1)
			return -1;
		if (len == 0)
			continue;
		switch (wire_reply_kind(line, len)) {
		case REPLY_OK:
			return 0;
		case REPLY_FAIL:
			return -1;
		case REPLY_EVENT:
			break;
		}
	}
}

/* Send one RESP command, an array of bulk strings. */
int
wire_resp_command(struct wire *w, int argc, const char **argv)
{
	char	 buf[RESP_MAX];
	size_t	 len;
	int	 i, n;

	n = snprintf(buf, sizeof buf, "*%d\r\n", argc);
	len = (size_t)n;
	for (i = 0; i < argc; i++) {
		n = snprintf(buf + len, sizeof buf - len, "$%zu\r\n%s\r\n",
		    strlen(argv[i]), argv[i]);
		if (n < 0 || (size_t)n >= sizeof buf - len)
			return -1;
		len += (size_t)n;
	}
	return wire_write(w, buf, len);
}

/*
 * Read one RESP reply that is not an array.  *ret_type is its first byte
 * ('+', '-', ':' or '$'); *ret_value is an integer reply's value, or a
 * bulk reply's length (-1: nil).  A bulk body is skipped as one line: the
 * bench never stores a newline.
 */
int
wire_resp_reply(struct wire *w, char *ret_type, long long *ret_value)
{
	const char	*line, *body;
	char		 num[32];
	size_t		 len, blen;

	if (wire_read_line(w, &line, &len) == -1 || len < 2 ||
	    line[len - 1] != '\r')
		return -1;
	*ret_type = line[0];
	*ret_value = 0;
	if (line[0] == '+' || line[0] == '-')
		return 0;
	if ((line[0] != ':' && line[0] != '$') || len - 2 >= sizeof num)
		return -1;
	memcpy(num, line + 1, len - 2);
	num[len - 2] = '\0';
	*ret_value = strtoll(num, NULL, 10);
	if (line[0] == '$' && *ret_value >= 0 &&
	    wire_read_line(w, &body, &blen) == -1)
		return -1;
	return 0;
}
