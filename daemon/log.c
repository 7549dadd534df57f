/*
 * Logging to stderr, the way a foreground service logs.  Lines get a
 * "<N>" syslog priority prefix when stderr is the journal.
 */

#include <sys/stat.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "daemon.h"

static int	 log_verbose;
static int	 log_journal;

/*
 * Return 1 if stderr is the journal: JOURNAL_STREAM names its device and
 * inode.  A child whose stderr was redirected may inherit the variable.
 */
static int
log_stderr_is_journal(void)
{
	const char		*env = getenv("JOURNAL_STREAM");
	unsigned long long	 dev, ino;
	struct stat		 sb;

	if (env == NULL || sscanf(env, "%llu:%llu", &dev, &ino) != 2)
		return 0;
	if (fstat(STDERR_FILENO, &sb) == -1)
		return 0;
	return (unsigned long long)sb.st_dev == dev &&
	    (unsigned long long)sb.st_ino == ino;
}

/* Set verbosity, and whether stderr is the systemd journal. */
void
log_init(int verbose)
{
	log_verbose = verbose;
	log_journal = log_stderr_is_journal();
}

/* Write one line in a single call, so threads' lines never interleave. */
static void __attribute__((format(printf, 3, 0)))
log_vwrite(int priority, const char *errstr, const char *fmt, va_list ap)
{
	char	 line[1024], prefix[16];
	int	 saved = errno;

	vsnprintf(line, sizeof line, fmt, ap);
	if (log_journal)
		snprintf(prefix, sizeof prefix, "<%d>", priority);
	else
		snprintf(prefix, sizeof prefix, "locksd: ");
	if (errstr != NULL)
		fprintf(stderr, "%s%s: %s\n", prefix, line, errstr);
	else
		fprintf(stderr, "%s%s\n", prefix, line);
	/* A failed log write must not change what the caller acts on. */
	errno = saved;
}

/* Log a warning with the current errno's message. */
void
log_warn(const char *fmt, ...)
{
	const char	*errstr = strerror(errno);
	va_list		 ap;

	va_start(ap, fmt);
	log_vwrite(LOG_WARNING, errstr, fmt, ap);
	va_end(ap);
}

/* Log a warning without errno. */
void
log_warnx(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_vwrite(LOG_WARNING, NULL, fmt, ap);
	va_end(ap);
}

/* Log a notable event. */
void
log_info(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_vwrite(LOG_INFO, NULL, fmt, ap);
	va_end(ap);
}

/* Log detail shown only with --verbose. */
void
log_debug(const char *fmt, ...)
{
	va_list	 ap;

	if (!log_verbose)
		return;
	va_start(ap, fmt);
	log_vwrite(LOG_DEBUG, NULL, fmt, ap);
	va_end(ap);
}

/* Log with errno and exit: for start-up failures and impossible states. */
void
fatal(const char *fmt, ...)
{
	const char	*errstr = strerror(errno);
	va_list		 ap;

	va_start(ap, fmt);
	log_vwrite(LOG_CRIT, errstr, fmt, ap);
	va_end(ap);
	exit(1);
}

/* Log without errno and exit. */
void
fatalx(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_vwrite(LOG_CRIT, NULL, fmt, ap);
	va_end(ap);
	exit(1);
}
