/*
 * Who may use the broker: decided from the peer's SO_PEERCRED (and its
 * supplementary groups, SO_PEERGROUPS), never from the socket's mode.
 * With no --allow-user and no --allow-group, anyone who can reach the
 * socket may connect.
 */

#include <sys/socket.h>

#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"

#define ACCESS_MAX_GROUPS	1024	/* supplementary groups looked at */

struct access {
	uid_t		*uids;
	size_t		 nuids;
	gid_t		*gids;
	size_t		 ngids;
};

/* Make an empty rule set: everyone is allowed. */
struct access *
access_new(void)
{
	struct access	*access;

	if ((access = calloc(1, sizeof *access)) == NULL)
		fatal("calloc");
	return access;
}

/* Free the rules. */
void
access_free(struct access *access)
{
	if (access == NULL)
		return;
	free(access->uids);
	free(access->gids);
	free(access);
}

/* Parse a decimal id; -1 if text is not one. */
static int
parse_id(const char *text, unsigned long *ret_id)
{
	char	*end;

	if (text[0] < '0' || text[0] > '9')
		return -1;
	errno = 0;
	*ret_id = strtoul(text, &end, 10);
	if (errno != 0 || *end != '\0' || *ret_id >= UINT_MAX)
		return -1;
	return 0;
}

/* Allow a user, by name or number; -1 if no such user. */
int
access_allow_user(struct access *access, const char *user)
{
	struct passwd	*pw;
	unsigned long	 id;
	uid_t		*grown;

	if (parse_id(user, &id) == -1) {
		if ((pw = getpwnam(user)) == NULL)
			return -1;
		id = pw->pw_uid;
	}
	grown = reallocarray(access->uids, access->nuids + 1, sizeof *grown);
	if (grown == NULL)
		fatal("reallocarray");
	access->uids = grown;
	access->uids[access->nuids++] = (uid_t)id;
	return 0;
}

/* Allow a group, by name or number; -1 if no such group. */
int
access_allow_group(struct access *access, const char *group)
{
	struct group	*gr;
	unsigned long	 id;
	gid_t		*grown;

	if (parse_id(group, &id) == -1) {
		if ((gr = getgrnam(group)) == NULL)
			return -1;
		id = gr->gr_gid;
	}
	grown = reallocarray(access->gids, access->ngids + 1, sizeof *grown);
	if (grown == NULL)
		fatal("reallocarray");
	access->gids = grown;
	access->gids[access->ngids++] = (gid_t)id;
	return 0;
}

static int
gid_allowed(const struct access *access, gid_t gid)
{
	size_t	 i;

	for (i = 0; i < access->ngids; i++) {
		if (access->gids[i] == gid)
			return 1;
	}
	return 0;
}

/* Whether any of the peer's supplementary groups is allowed. */
static int
peer_groups_allowed(const struct access *access, int fd)
{
	gid_t		*groups;
	socklen_t	 len = ACCESS_MAX_GROUPS * sizeof *groups;
	size_t		 i, n;
	int		 allowed = 0;

	if ((groups = malloc(len)) == NULL)
		return 0;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) == 0) {
		n = len / sizeof *groups;
		for (i = 0; i < n && !allowed; i++)
			allowed = gid_allowed(access, groups[i]);
	}
	free(groups);
	return allowed;
}

/* Whether the peer on fd may use the broker. */
int
access_allows(const struct access *access, int fd, const struct peer *peer)
{
	size_t	 i;

	if (access == NULL || (access->nuids == 0 && access->ngids == 0))
		return 1;
	for (i = 0; i < access->nuids; i++) {
		if (access->uids[i] == peer->uid)
			return 1;
	}
	if (gid_allowed(access, peer->gid))
		return 1;
	return access->ngids > 0 && peer_groups_allowed(access, fd);
}
