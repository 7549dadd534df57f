/*
 * A test double of systemd's descriptor store, speaking its protocol: a
 * datagram socket named by $NOTIFY_SOCKET that keeps the descriptors
 * sent with FDSTORE=1 under their FDNAME=, drops them on FDSTOREREMOVE=1,
 * and starts a service's next instance with them at fd 3 and up and
 * LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID set as systemd sets them.
 * As systemd 252 does, it keeps one open file description once, drops a
 * socket whose peer hung up, and hands them back newest first.
 */
#ifndef LOCKS_TEST_FDSTORE_H
#define LOCKS_TEST_FDSTORE_H

#include <stddef.h>

#include "harness.h"

#define FDSTORE_MAX	30000	/* kept at most, as FileDescriptorStoreMax */

/* A kept descriptor's file, to find one kept again without a scan. */
struct fdstore_id {
	unsigned long long	 dev;
	unsigned long long	 ino;
};

struct fdstore {
	int		 sock;
	char		 path[108];
	int		*fds;
	char		**names;
	struct fdstore_id *ids;		/* each one's file */
	size_t		*slots;		/* ids hashed: index + 1, or 0 */
	size_t		 nslots;	/* 0: to be rebuilt */
	size_t		 n;
	size_t		 max;		/* the store's bound */
	size_t		 refused;	/* past max, closed */
	size_t		 messages;	/* FDSTORE=1 datagrams */
	int		 listener;	/* a socket unit's, or -1 */
	size_t		 duplicates;	/* dropped: one description again */
	size_t		 hung_up;	/* dropped: the peer went */
	int		 state_copy;	/* the last state handed back, or -1 */
	/* Called between the old instance's exit and the next one's start. */
	void		(*between)(struct fdstore *, void *);
	void		*between_arg;
	char		 error[256];	/* why fdstore_restart failed */
};

int		 fdstore_open(struct fdstore *, const char *);
void		 fdstore_close(struct fdstore *);
int		 fdstore_drain(struct fdstore *);
int		 fdstore_restart(struct fdstore *, struct h_daemon *);
size_t		 fdstore_count(const struct fdstore *, const char *);
void		 fdstore_add(struct fdstore *, int, const char *);
void		 fdstore_drop(struct fdstore *, size_t);

#endif /* LOCKS_TEST_FDSTORE_H */
