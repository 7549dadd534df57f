/*
 * Built by test_install.sh against the installed locks.h and liblocks
 * only: takes a lock, checks that a second connection cannot, releases.
 *
 * usage: install_probe SOCKET
 */

#include <stdio.h>

#include <locks.h>

/* Connect to the daemon at path, or say why not. */
static locks_conn *
probe_connect(const char *path)
{
	locks_conn	*c;
	int		 rc;

	if ((rc = locks_connect(path, "install-probe", &c)) != LOCKS_OK) {
		fprintf(stderr, "connect %s: %s: %s\n", path,
		    locks_error_code(rc), locks_last_message(NULL));
		return NULL;
	}
	return c;
}

int
main(int argc, char **argv)
{
	struct locks_acquire_opts	 opts = LOCKS_ACQUIRE_OPTS_INIT;
	locks_conn			*a, *b;
	int64_t				 token = 0;
	int				 rc;

	if (argc != 2) {
		fprintf(stderr, "usage: install_probe SOCKET\n");
		return 2;
	}
	if ((a = probe_connect(argv[1])) == NULL ||
	    (b = probe_connect(argv[1])) == NULL)
		return 1;
	opts.timeout = 5;
	if ((rc = locks_acquire(a, "install-probe", &opts, &token)) != LOCKS_OK) {
		fprintf(stderr, "acquire: %s\n", locks_error_code(rc));
		return 1;
	}
	opts.timeout = 0;
	if ((rc = locks_acquire(b, "install-probe", &opts, NULL)) !=
	    LOCKS_E_TIMEOUT) {
		fprintf(stderr, "second acquire: %s, not timeout\n",
		    locks_error_code(rc));
		return 1;
	}
	if ((rc = locks_release(a, "install-probe")) != LOCKS_OK) {
		fprintf(stderr, "release: %s\n", locks_error_code(rc));
		return 1;
	}
	locks_close(b);
	locks_close(a);
	printf("acquired install-probe token %lld\n", (long long)token);
	return 0;
}
