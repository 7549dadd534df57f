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
#include <string.h>
#include <unistd.h>

#include "daemon.h"

#define TOKEN_FILE_TMP	".tokens.tmp"

/*
 * Parse a saved ceiling: decimal digits and a newline, at most TOKEN_MAX.
 * Returns 0, or -EINVAL.
 */
static int
token_parse(const char *text, int64_t *ret_ceiling)
{
	int64_t	 value = 0;

	if (*text < '0' || *text > '9')
		return -EINVAL;
	for (; *text >= '0' && *text <= '9'; text++) {
		value = value * 10 + (*text - '0');
		if (value > TOKEN_MAX)
			return -EINVAL;
	}
	if (strcmp(text, "\n") != 0 && *text != '\0')
		return -EINVAL;
	*ret_ceiling = value;
	return 0;
}

/*
 * Read the reserved ceiling stored in the lock dir: 0 if there is none
 * yet.  Anything else that is not a ceiling (unreadable, not a regular
 * file, garbage, past TOKEN_MAX) is an error, -errno or -EINVAL: guessing
 * could hand out a token twice.
 */
int
token_read_ceiling(int dirfd, int64_t *ret_ceiling)
{
	char	 buf[32];
	ssize_t	 n;
	int	 fd, error;

	fd = openat(dirfd, TOKEN_FILE, O_RDONLY | O_CLOEXEC | O_NOFOLLOW |
	    O_NONBLOCK | O_NOCTTY);
	if (fd == -1) {
		if (errno != ENOENT)
			return -errno;
		*ret_ceiling = 0;
		return 0;
	}
	n = read(fd, buf, sizeof buf - 1);
	error = n == -1 ? -errno : 0;
	close(fd);
	if (error != 0)
		return error;
	buf[n] = '\0';
	return token_parse(buf, ret_ceiling);
}

/*
 * The first token for this run: above the clock and the saved ceiling.
 * Returns 0, or the error of token_read_ceiling.
 */
int
token_seed(int dirfd, double realtime, int64_t *ret_first)
{
	int64_t	 clock_us, ceiling;
	int	 error;

	if ((error = token_read_ceiling(dirfd, &ceiling)) != 0)
		return error;
	clock_us = (int64_t)(realtime * 1e6);
	*ret_first = (ceiling > clock_us ? ceiling : clock_us) + 1;
	return 0;
}

/* Write all of buf to fd, as often as write(2) takes; -errno on failure. */
int
fd_write_all(int fd, const char *buf, size_t len)
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
	return 0;
}

/* Write all of buf to fd and make it durable; -errno on failure. */
static int
token_write(int fd, const char *buf, size_t len)
{
	int	 error;

	if ((error = fd_write_all(fd, buf, len)) != 0)
		return error;
	return fsync(fd) == -1 ? -errno : 0;
}

/*
 * Durably save a ceiling no token of this run will pass: write and fsync
 * a temporary file, rename it over .tokens, fsync the directory.  Returns
 * 0, or -errno with *ret_file naming the file of the step that failed;
 * the ceiling counts as saved only on 0.
 */
int
token_reserve(int dirfd, int64_t ceiling, const char **ret_file)
{
	char	 buf[32];
	int	 fd, len, error;

	*ret_file = TOKEN_FILE_TMP;
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
	*ret_file = TOKEN_FILE;
	if (renameat(dirfd, TOKEN_FILE_TMP, dirfd, TOKEN_FILE) == -1)
		return -errno;
	*ret_file = ".";
	return fsync(dirfd) == -1 ? -errno : 0;
}
