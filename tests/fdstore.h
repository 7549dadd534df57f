/*
 * A test double of systemd's descriptor store, speaking its protocol: a
 * datagram socket named by $NOTIFY_SOCKET that keeps the descriptors
 * sent with FDSTORE=1 under their FDNAME=, drops them on FDSTOREREMOVE=1,
 * and starts a service's next instance with them at fd 3 and up and
 * LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID set as systemd sets them.
 */
#ifndef LOCKS_TEST_FDSTORE_H
#define LOCKS_TEST_FDSTORE_H

#include <stddef.h>

#include "harness.h"

#define FDSTORE_MAX	30000	/* kept at most, as FileDescriptorStoreMax */

struct fdstore {
	int		 sock;
	char		 path[108];
	int		*fds;
	char		**names;
	size_t		 n;
	size_t		 max;		/* the store's bound */
	size_t		 refused;	/* past max, closed */
	size_t		 messages;	/* FDSTORE=1 datagrams */
	int		 listener;	/* a socket unit's, or -1 */
	char		 error[256];	/* why fdstore_restart failed */
};

int		 fdstore_open(struct fdstore *, const char *);
void		 fdstore_close(struct fdstore *);
int		 fdstore_drain(struct fdstore *);
int		 fdstore_restart(struct fdstore *, struct h_daemon *);
size_t		 fdstore_count(const struct fdstore *, const char *);

#endif /* LOCKS_TEST_FDSTORE_H */
