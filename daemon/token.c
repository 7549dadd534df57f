/*
 * Fencing tokens that keep growing across daemon restarts.
 *
 * Tokens start from the realtime clock in microseconds, and the daemon also
 * keeps a reserved ceiling in <lock-dir>/.tokens (a name no lock can have,
 * since names never start with '.').  A restart starts above both, so a
 * clock set backwards never makes the daemon reuse a lower token.  The
 * daemon never grants a token above the ceiling it has durably saved, so
 * a crash at any moment cannot make a later run repeat one.
 */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "daemon.h"

#define TOKEN_FILE_TMP	".tokens.tmp"

/* Return the reserved ceiling stored in the lock dir, or 0 if none. */
static int64_t
token_read_ceiling(int dirfd)
{
	char	 buf[32];
	ssize_t	 n;
	int	 fd;

	fd = openat(dirfd, TOKEN_FILE, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd == -1)
		return 0;
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	return strtoll(buf, NULL, 10);
}

/* Return the first token for this run: above the clock and the ceiling. */
int64_t
token_seed(int dirfd, double realtime)
{
	int64_t	 clock_us, ceiling;

	clock_us = (int64_t)(realtime * 1e6);
	ceiling = token_read_ceiling(dirfd);
	return (ceiling > clock_us ? ceiling : clock_us) + 1;
}

/* Write all of buf to fd and make it durable; -errno on failure. */
static int
token_write(int fd, const char *buf, size_t len)
{
	ssize_t	 n;

	while (len > 0) {
		if ((n = write(fd, buf, len)) == -1) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		buf += n;
		len -= (size_t)n;
	}
	return fsync(fd) == -1 ? -errno : 0;
}

/*
 * Durably save a ceiling no token of this run will pass: write and fsync
 * a temporary file, rename it over .tokens, fsync the directory.  Returns
 * 0, or -errno; the ceiling counts as saved only on 0.
 */
int
token_reserve(int dirfd, int64_t ceiling)
{
	char	 buf[32];
	int	 fd, len, error;

	len = snprintf(buf, sizeof buf, "%" PRId64 "\n", ceiling);
	fd = openat(dirfd, TOKEN_FILE_TMP,
	    O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK,
	    0644);
	if (fd == -1)
		return -errno;
	error = token_write(fd, buf, (size_t)len);
	if (close(fd) == -1 && error == 0)
		error = -errno;
	if (error != 0)
		return error;
	if (renameat(dirfd, TOKEN_FILE_TMP, dirfd, TOKEN_FILE) == -1)
		return -errno;
	return fsync(dirfd) == -1 ? -errno : 0;
}
