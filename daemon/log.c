/*
 * Logging to stderr, the way a foreground service logs.  Lines get a
 * "<N>" syslog priority prefix when stderr is the journal.
 */

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "daemon.h"

static int	 log_verbose;
static int	 log_journal;

/* Set verbosity, and whether stderr is the systemd journal. */
void
log_init(int verbose)
{
	log_verbose = verbose;
	log_journal = getenv("JOURNAL_STREAM") != NULL;
}

static void
log_vwrite(int priority, const char *errstr, const char *fmt, va_list ap)
{
	char	 line[1024];

	vsnprintf(line, sizeof line, fmt, ap);
	if (log_journal)
		fprintf(stderr, "<%d>", priority);
	else
		fputs("locksd: ", stderr);
	if (errstr != NULL)
		fprintf(stderr, "%s: %s\n", line, errstr);
	else
		fprintf(stderr, "%s\n", line);
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
