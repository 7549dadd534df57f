/*
 * libFuzzer target: the request fast path (proto_request_scan) against
 * the json-c path (proto_parse_line and proto_request_decode) on the same
 * line.  Whatever the fast path accepts, json-c must accept and decode to
 * the same request, with the same id text; else abort.
 */

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "protocol.h"

static int
same_string(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

static int
same_double(double a, double b)
{
	return memcmp(&a, &b, sizeof a) == 0;
}

/* The two decodings must agree in every field the daemon reads. */
static void
compare(const struct proto_request *fast, const struct proto_request *slow)
{
	size_t		 len;
	const char	*text;

	if (fast->op != slow->op || !same_string(fast->name, slow->name) ||
	    fast->mode != slow->mode ||
	    !same_double(fast->timeout, slow->timeout) ||
	    !same_double(fast->notify_after, slow->notify_after) ||
	    !same_string(fast->owner, slow->owner) ||
	    !same_string(fast->client, slow->client) ||
	    fast->all != slow->all)
		abort();
	if ((fast->id == NULL) != (slow->id == NULL) ||
	    fast->id_len != slow->id_len ||
	    memcmp(fast->id_text, slow->id_text, fast->id_len) != 0)
		abort();
	if (fast->id != NULL) {
		if (json_object_get_type(fast->id) !=
		    json_object_get_type(slow->id))
			abort();
		text = proto_id_text(fast->id, &len);
		if (len != slow->id_len || memcmp(text, slow->id_text, len))
			abort();
	}
}

/* Compare the paths on one line; both decline or both agree. */
static void
check_line(struct json_tokener *tok, const char *line, size_t len)
{
	struct proto_scratch	 scratch;
	struct proto_request	 fast, slow;
	struct json_object	*obj = NULL;
	const char		*msg;

	if (proto_request_scan(line, len, &scratch, &fast) == -1)
		return;
	if (proto_parse_line(tok, line, len, &obj) == -1 ||
	    proto_request_decode(obj, &slow, &msg) != PROTO_OK)
		abort();
	compare(&fast, &slow);
	json_object_put(fast.id);
	json_object_put(obj);
}

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct json_tokener	*tok;
	char				*line;

	if (tok == NULL && (tok = proto_tokener_new()) == NULL)
		abort();
	if (size > PROTO_MAX_LINE)
		return 0;
	/* A copy without slack, so ASan sees any read past the line. */
	if ((line = malloc(size ? size : 1)) == NULL)
		return 0;
	memcpy(line, data, size);
	check_line(tok, line, size);
	free(line);
	return 0;
}
