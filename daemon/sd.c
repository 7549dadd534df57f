/*
 * systemd integration through libsystemd's sd-daemon API: the check of
 * the listening sockets of socket activation (reload.c reads LISTEN_FDS,
 * as a restart's descriptors come that way too), and the notifications
 * a Type=notify service sends (READY=1, STATUS=, STOPPING=1, WATCHDOG=1,
 * RELOADING=1).
 *
 * Functions here are prefixed systemd_, as sd_ belongs to libsystemd.
 * Every notification is a no-op when NOTIFY_SOCKET is unset, so locksd
 * behaves the same outside systemd.
 */

#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <systemd/sd-daemon.h>

#include "daemon.h"

struct systemd {
	struct event	*watchdog_ev;
	char		*status;	/* the last STATUS= sent */
	int		 warned;	/* a failed notification was logged */
};

/*
 * Take an inherited descriptor as a listener if it is a listening Unix
 * stream socket (made non-blocking): 0.  Else, at a plain start, it is a
 * socket unit set up wrong, and fatal; in a restore it is a stray the
 * store kept, and is logged and closed (-1), since failing would fail
 * every start that systemd tries again with the same store.
 */
int
systemd_take_fd(int fd, const char *name, int restoring)
{
	char	 why[128];
	int	 r, flags;

	r = sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0);
	if (r > 0 && (flags = fcntl(fd, F_GETFL)) != -1 &&
	    fcntl(fd, F_SETFL, flags | O_NONBLOCK) != -1)
		return 0;
	if (r > 0)
		snprintf(why, sizeof why, ": fcntl: %s", strerror(errno));
	else if (r < 0)
		snprintf(why, sizeof why, ": %s", strerror(-r));
	else
		snprintf(why, sizeof why, " is not a listening Unix stream "
		    "socket");
	if (!restoring)
		fatalx("inherited fd %d (%s)%s", fd, name, why);
	log_warnx("inherited fd %d (%s)%s; closed", fd, name, why);
	close(fd);
	return -1;
}

/* Put the path a listening socket is bound to in buf; -1 if it has none. */
int
systemd_socket_path(int fd, char *buf, size_t size)
{
	struct sockaddr_un	 sun;
	socklen_t		 len = sizeof sun;

	memset(&sun, 0, sizeof sun);
	if (getsockname(fd, (struct sockaddr *)&sun, &len) == -1 ||
	    sun.sun_family != AF_UNIX || sun.sun_path[0] == '\0')
		return -1;
	if (snprintf(buf, size, "%.*s", (int)sizeof sun.sun_path,
	    sun.sun_path) >= (int)size)
		return -1;
	return 0;
}

/* Send one notification; the first failure is logged, later ones not. */
static void
systemd_send(struct systemd *sd, const char *text)
{
	int	 r;

	if ((r = sd_notify(0, text)) >= 0)
		return;
	if (!sd->warned)
		log_warnx("sd_notify: %s", strerror(-r));
	sd->warned = 1;
}

/* Ping the watchdog; a stuck event loop stops the pings. */
static void
systemd_watchdog_cb(evutil_socket_t fd, short events, void *arg)
{
	(void)fd;
	(void)events;
	systemd_send(arg, "WATCHDOG=1");
}

/* Start pinging at half of WATCHDOG_USEC, if systemd asks for pings. */
static void
systemd_watchdog_start(struct systemd *sd, struct event_base *base)
{
	struct timeval	 tv;
	uint64_t	 usec;
	int		 r;

	if ((r = sd_watchdog_enabled(0, &usec)) < 0)
		log_warnx("WATCHDOG_USEC: %s; no watchdog", strerror(-r));
	if (r <= 0 || usec == 0)
		return;
	usec /= 2;
	tv.tv_sec = usec / 1000000;
	tv.tv_usec = usec % 1000000;
	sd->watchdog_ev = event_new(base, -1, EV_PERSIST, systemd_watchdog_cb,
	    sd);
	if (sd->watchdog_ev == NULL || evtimer_add(sd->watchdog_ev, &tv) == -1)
		fatalx("cannot set up the watchdog timer");
	log_info("watchdog: pinging every %llu ms",
	    (unsigned long long)(usec / 1000));
}

/* Set up notifications, and the watchdog timer on base if one is asked. */
struct systemd *
systemd_new(struct event_base *base)
{
	struct systemd	*sd;

	if ((sd = calloc(1, sizeof *sd)) == NULL)
		fatal("calloc");
	systemd_watchdog_start(sd, base);
	return sd;
}

/* Stop the watchdog and free; accepts NULL. */
void
systemd_free(struct systemd *sd)
{
	if (sd == NULL)
		return;
	if (sd->watchdog_ev != NULL)
		event_free(sd->watchdog_ev);
	free(sd->status);
	free(sd);
}

/* Remember status as the last one sent; 0 if it is no news. */
static int
systemd_set_status(struct systemd *sd, const char *status)
{
	char	*copy;

	if (sd->status != NULL && strcmp(sd->status, status) == 0)
		return 0;
	if ((copy = strdup(status)) == NULL) {
		log_warn("strdup");
		return 0;
	}
	free(sd->status);
	sd->status = copy;
	return 1;
}

/* Tell systemd we accept connections, with a first status line. */
void
systemd_ready(struct systemd *sd, const char *status)
{
	char	 text[512];

	systemd_set_status(sd, status);
	snprintf(text, sizeof text, "READY=1\nSTATUS=%s", status);
	systemd_send(sd, text);
}

/* Send a status line, unless it is the one sent last. */
void
systemd_status(struct systemd *sd, const char *status)
{
	char	 text[512];

	if (!systemd_set_status(sd, status))
		return;
	snprintf(text, sizeof text, "STATUS=%s", status);
	systemd_send(sd, text);
}

/* Tell systemd we are shutting down. */
void
systemd_stopping(struct systemd *sd)
{
	systemd_set_status(sd, "shutting down");
	systemd_send(sd, "STOPPING=1\nSTATUS=shutting down");
}

/* Tell systemd a reload begins; READY=1 ends it, from whichever image. */
void
systemd_reloading(struct systemd *sd)
{
	systemd_send(sd, "RELOADING=1\nSTATUS=reloading");
}
