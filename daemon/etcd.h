/*
 * The etcd lock store: cluster locks as keys in an etcd cluster, reached
 * through its v3 JSON gateway.  etcd_recipe.c is the pure half (encodings
 * and the queue recipe); store_etcd.c the transport, lease and store ops.
 */
#ifndef LOCKSD_ETCD_H
#define LOCKSD_ETCD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <json-c/json.h>

#include "mode.h"
#include "protocol.h"

#define ETCD_PREFIX_MAX	256	/* bytes in --etcd-prefix */
#define ETCD_KEY_MAX	(ETCD_PREFIX_MAX + PROTO_MAX_NAME + 48)
#define ETCD_VALUE_MAX	2048	/* bytes of a holder's value */
#define ETCD_NODE_MAX	64	/* bytes in --node */

/* etcd_recipe.c */

/* One key of a lock's queue, decoded from a range reply. */
struct etcd_kv {
	char		 key[ETCD_KEY_MAX];
	char		 value[ETCD_VALUE_MAX];
	int64_t		 create_revision;
	int64_t		 lease;
	enum proto_mode	 mode;
};

/* A lock's queue as read for one take, key by key in create order. */
struct etcd_queue {
	int64_t		 mine;		/* the take's create_revision */
	enum proto_mode	 mode;		/* the take's mode */
	char		 blocker[ETCD_KEY_MAX];	/* the key to watch */
	int64_t		 blocker_revision;	/* 0: none, granted */
	size_t		 ahead;		/* keys before mine */
	size_t		 nkeys;
	size_t		 nhead;		/* keys that hold now */
	int		 head_shared;
};

size_t		 etcd_b64_encode(const void *, size_t, char *, size_t);
ssize_t		 etcd_b64_decode(const char *, char *, size_t);
int64_t		 etcd_int64(struct json_object *, const char *);
struct json_object *etcd_int64_new(int64_t);
struct json_object *etcd_key_new(const char *);
int		 etcd_range_end(const char *, char *, size_t);
int		 etcd_key_format(char *, size_t, const char *, const char *,
		    int64_t, uint64_t, enum proto_mode);
int		 etcd_key_parse(const char *, const char *, char *, size_t,
		    enum proto_mode *);
int		 etcd_kv_decode(struct json_object *, struct etcd_kv *);
void		 etcd_queue_init(struct etcd_queue *, int64_t,
		    enum proto_mode);
void		 etcd_queue_add(struct etcd_queue *, const struct etcd_kv *);
int		 etcd_queue_granted(const struct etcd_queue *);

#endif /* LOCKSD_ETCD_H */
