/*
 * Seeing holders outside the broker: the flock(2) locks in /proc/locks on
 * the lock directory's device, matched to lock files by inode, the way
 * util-linux lslocks does.  The daemon's own flocks (its pid) are its
 * clients' and are left out.
 */

#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"

#define PROC_LOCKS	"/proc/locks"
#define OUTSIDE_MAX	65536	/* entries kept at most, bounding memory */
#define OUTSIDE_READ	65536	/* bytes asked of each read(2) */
#define OUTSIDE_MAX_BYTES (64 * 1024 * 1024)	/* of /proc/locks read */

/* Parse one /proc/locks line; 1 if it is a granted FLOCK on dev. */
static int
outside_parse(const char *line, dev_t dev, struct outside_holder *ret)
{
	char		 type[16], access[16], rw[16];
	unsigned int	 major, minor;
	unsigned long	 ino;
	long		 pid;

	/* "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF"; waiters have "->". */
	if ((line = strchr(line, ':')) == NULL || strstr(line, "->") != NULL)
		return 0;
	if (sscanf(line + 1, "%15s %15s %15s %ld %x:%x:%lu", type, access, rw,
	    &pid, &major, &minor, &ino) != 7)
		return 0;
	if (strcmp(type, "FLOCK") != 0 || pid <= 0 ||
	    makedev(major, minor) != dev)
		return 0;
	ret->pid = (pid_t)pid;
	ret->ino = (ino_t)ino;
	ret->mode = strcmp(rw, "READ") == 0 ? PROTO_SHARED : PROTO_EXCLUSIVE;
	return 1;
}

/* Read the command name of pid, as ps shows it ("?" if it is gone). */
static void
outside_command(pid_t pid, char *buf, size_t size)
{
	char	 path[64];
	FILE	*fp;

	snprintf(path, sizeof path, "/proc/%ld/comm", (long)pid);
	snprintf(buf, size, "?");
	if ((fp = fopen(path, "re")) == NULL)
		return;
	if (fgets(buf, (int)size, fp) != NULL)
		buf[strcspn(buf, "\n")] = '\0';
	fclose(fp);
}

/*
 * Read all of /proc/locks with large read(2)s: stdio's 1 KiB reads let the
 * kernel's view shift between them far more often.  Returns a
 * NUL-terminated buffer to free, or NULL.
 */
static char *
outside_slurp(void)
{
	char	*buf = NULL, *grown;
	size_t	 len = 0, cap = 0;
	ssize_t	 n;
	int	 fd;

	if ((fd = open(PROC_LOCKS, O_RDONLY | O_CLOEXEC)) == -1)
		return NULL;
	for (;;) {
		if (cap - len < OUTSIDE_READ + 1) {
			if (cap >= OUTSIDE_MAX_BYTES ||
			    (grown = realloc(buf, cap + OUTSIDE_READ + 1)) ==
			    NULL)
				break;
			buf = grown;
			cap += OUTSIDE_READ + 1;
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	if (buf != NULL)
		buf[len] = '\0';
	return buf;
}

/* Whether h is already collected (the kernel's view can repeat lines). */
static int
outside_seen(const struct outside_holder *holders, size_t n,
    const struct outside_holder *h)
{
	size_t	 i;

	for (i = 0; i < n; i++) {
		if (holders[i].ino == h->ino && holders[i].pid == h->pid &&
		    holders[i].mode == h->mode)
			return 1;
	}
	return 0;
}

/*
 * Collect the flocks held on device dev by processes other than self.
 * Returns the count and an array to free (NULL when none or on error).
 * /proc/locks is only consistent a page at a time, so a busy machine can
 * still hide a holder; callers that know a lock is held outside retry.
 */
size_t
outside_scan(dev_t dev, pid_t self, struct outside_holder **ret)
{
	struct outside_holder	*holders = NULL, *grown, h;
	size_t			 n = 0, cap = 0;
	char			*text, *line, *next;

	*ret = NULL;
	if ((text = outside_slurp()) == NULL)
		return 0;
	for (line = text; line != NULL && n < OUTSIDE_MAX; line = next) {
		if ((next = strchr(line, '\n')) != NULL)
			*next++ = '\0';
		memset(&h, 0, sizeof h);
		if (!outside_parse(line, dev, &h) || h.pid == self ||
		    outside_seen(holders, n, &h))
			continue;
		if (n == cap) {
			cap = cap == 0 ? 16 : cap * 2;
			grown = reallocarray(holders, cap, sizeof *holders);
			if (grown == NULL)
				break;
			holders = grown;
		}
		outside_command(h.pid, h.command, sizeof h.command);
		holders[n++] = h;
	}
	free(text);
	*ret = holders;
	return n;
}

/* Describe an outside holder as the protocol shows it. */
struct json_object *
outside_encode(const struct outside_holder *h)
{
	struct proto_holder	 ph;

	memset(&ph, 0, sizeof ph);
	ph.external = 1;
	ph.pid = h->pid;
	ph.mode = h->mode;
	ph.command = h->command;
	return proto_holder_encode(&ph);
}
