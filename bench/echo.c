/*
 * The limit: a single-threaded epoll server on a Unix socket that answers
 * every line it reads with one fixed reply and does nothing else.  No
 * line-protocol broker on one thread can beat it on this machine.
 */

#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

#define ECHO_READ	65536	/* bytes read at once */
#define ECHO_EVENTS	256	/* events taken per epoll_wait */

/* The fixed reply: shaped like a grant, so as long as the broker's. */
static const char	 echo_reply[] = "{\"id\":2,\"ok\":true,\"name\":"
    "\"bench-0\",\"mode\":\"exclusive\",\"token\":1764253000123456,"
    "\"waited\":2.5e-06}\n";

/* One client: the replies it has not taken yet. */
struct echo_conn {
	int		 fd;
	char		*out;
	size_t		 len;
	size_t		 cap;
	int		 want_out;	/* EPOLLOUT is in its interest set */
};

/* Queue n replies; -1 if out of memory. */
static int
echo_queue(struct echo_conn *c, size_t n)
{
	size_t	 need = c->len + n * (sizeof echo_reply - 1), cap;
	char	*out;

	if (need > c->cap) {
		for (cap = c->cap ? c->cap : 4096; cap < need; cap *= 2)
			;
		if ((out = realloc(c->out, cap)) == NULL)
			return -1;
		c->out = out;
		c->cap = cap;
	}
	while (n-- > 0) {
		memcpy(c->out + c->len, echo_reply, sizeof echo_reply - 1);
		c->len += sizeof echo_reply - 1;
	}
	return 0;
}

/* Write what the socket takes; 1 if some is left, -1 if the peer left. */
static int
echo_flush(struct echo_conn *c)
{
	ssize_t	 n;

	while (c->len > 0) {
		n = send(c->fd, c->out, c->len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 1;
		if (n <= 0)
			return -1;
		memmove(c->out, c->out + n, c->len - (size_t)n);
		c->len -= (size_t)n;
	}
	return 0;
}

static void
echo_close(struct echo_conn *c)
{
	close(c->fd);
	free(c->out);
	free(c);
}

/* Answer each complete line read, then write; -1 when the peer is gone. */
static int
echo_readable(struct echo_conn *c, char *buf)
{
	size_t	 lines = 0;
	ssize_t	 n, i;

	n = recv(c->fd, buf, ECHO_READ, MSG_DONTWAIT);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (n <= 0)
		return -1;
	for (i = 0; i < n; i++)
		lines += buf[i] == '\n';
	if (echo_queue(c, lines) == -1)
		return -1;
	return echo_flush(c) == -1 ? -1 : 0;
}

/* Accept every pending client. */
static void
echo_accept(int epfd, int lfd)
{
	struct epoll_event	 ev;
	struct echo_conn	*c;
	int			 fd;

	while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK |
	    SOCK_CLOEXEC)) != -1) {
		if ((c = calloc(1, sizeof *c)) == NULL) {
			close(fd);
			continue;
		}
		c->fd = fd;
		ev.events = EPOLLIN;
		ev.data.ptr = c;
		if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) == -1)
			echo_close(c);
	}
}

/* Handle one event of a client; the listener has data.ptr NULL. */
static void
echo_event(int epfd, struct epoll_event *ev, char *buf)
{
	struct echo_conn	*c = ev->data.ptr;
	struct epoll_event	 mod;
	int			 rc = 0;

	if (ev->events & EPOLLIN)
		rc = echo_readable(c, buf);
	else if (ev->events & EPOLLOUT)
		rc = echo_flush(c) == -1 ? -1 : 0;
	else
		rc = -1;
	if (rc == -1) {
		epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
		echo_close(c);
		return;
	}
	/* Touch the interest set only when it changes: a syscall saved. */
	if (c->want_out == (c->len > 0))
		return;
	c->want_out = c->len > 0;
	mod.events = c->want_out ? EPOLLIN | EPOLLOUT : EPOLLIN;
	mod.data.ptr = c;
	epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &mod);
}

/* Listen on a fresh socket at path. */
static int
echo_listen(const char *path)
{
	struct sockaddr_un	 sun;
	int			 fd;

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof sun.sun_path)
		return -1;
	memcpy(sun.sun_path, path, strlen(path));
	unlink(path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1 || bind(fd, (struct sockaddr *)&sun, sizeof sun) == -1 ||
	    listen(fd, SOMAXCONN) == -1)
		return -1;
	return fd;
}

/* Serve on path until killed. */
int
echo_main(const char *path)
{
	struct epoll_event	 ev, events[ECHO_EVENTS];
	static char		 buf[ECHO_READ];
	int			 epfd, lfd, n, i;

	signal(SIGPIPE, SIG_IGN);
	if ((lfd = echo_listen(path)) == -1 ||
	    (epfd = epoll_create1(EPOLL_CLOEXEC)) == -1) {
		perror(path);
		return 1;
	}
	ev.events = EPOLLIN;
	ev.data.ptr = NULL;
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev) == -1) {
		perror("epoll_ctl");
		return 1;
	}
	for (;;) {
		n = epoll_wait(epfd, events, ECHO_EVENTS, -1);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			perror("epoll_wait");
			return 1;
		}
		for (i = 0; i < n; i++) {
			if (events[i].data.ptr == NULL)
				echo_accept(epfd, lfd);
			else
				echo_event(epfd, &events[i], buf);
		}
	}
}
