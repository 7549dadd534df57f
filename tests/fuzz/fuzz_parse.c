/*
 * libFuzzer target: the request fast path (proto_request_scan) against
 * the json-c path (proto_parse_line and proto_request_decode) on the same
 * line.  Whatever the fast path accepts, json-c must accept and decode to
 * the same request, with the same id text; and whatever json-c decodes,
 * proto_request_format must write as json-c does, and back; else abort.
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

/* Two decodings must agree in every field the daemon reads but the id. */
static void
compare_fields(const struct proto_request *a, const struct proto_request *b)
{
	if (a->op != b->op || !same_string(a->name, b->name) ||
	    a->mode != b->mode || !same_double(a->timeout, b->timeout) ||
	    !same_double(a->notify_after, b->notify_after) ||
	    !same_string(a->owner, b->owner) ||
	    !same_string(a->client, b->client) || a->all != b->all ||
	    a->limit != b->limit || !same_string(a->after, b->after) ||
	    a->handoff != b->handoff || a->scope != b->scope ||
	    a->notify_contended != b->notify_contended ||
	    a->metrics != b->metrics ||
	    a->detect_deadlock != b->detect_deadlock ||
	    !same_string(a->deadlock_group, b->deadlock_group))
		abort();
}

/*
 * The fast path's id must be json-c's in wire text, and the object a
 * reply rebuilds from that text json-c's in type and text.
 */
static void
compare_id(const struct proto_request *fast, const struct proto_request *slow)
{
	struct json_object	*id;
	size_t			 len;
	const char		*text;

	if (fast->id != NULL || fast->id_len != slow->id_len ||
	    memcmp(fast->id_text, slow->id_text, fast->id_len) != 0)
		abort();
	id = proto_request_id(fast);
	if ((id == NULL) != (slow->id == NULL))
		abort();
	if (id != NULL) {
		if (json_object_get_type(id) != json_object_get_type(slow->id))
			abort();
		text = proto_id_text(id, &len);
		if (len != slow->id_len || memcmp(text, slow->id_text, len))
			abort();
	}
	json_object_put(id);
}

/*
 * Format a decoded request as liblocks would send it: the line must be
 * json-c's to the byte, and decode back to the same request.  The line is
 * sized as liblocks sizes it, since escapes can make a path's line several
 * times its input (a '/' is two bytes, a control byte six).
 */
static void
check_format(struct json_tokener *tok, const struct proto_request *req)
{
	struct proto_scratch	 scratch;
	struct proto_request	 back;
	struct json_object	*tree, *obj;
	const char		*json, *msg;
	char			*line;
	size_t			 len, json_len;

	len = proto_request_format(NULL, 0, req, 7);
	if ((line = malloc(len)) == NULL)
		abort();
	if (proto_request_format(line, len, req, 7) != len)
		abort();
	tree = proto_request_encode(req, 7);
	json = proto_serialize(tree, &json_len);
	if (len != json_len + 1 || memcmp(line, json, json_len) != 0 ||
	    line[json_len] != '\n')
		abort();
	json_object_put(tree);
	if (proto_request_parse(tok, line, json_len, &scratch, &back, &obj,
	    &msg) != PROTO_OK)
		abort();
	compare_fields(&back, req);
	json_object_put(obj);
	free(line);
}

/*
 * Compare the paths on one line: what the fast path takes, json-c must
 * decode the same.  Then whatever json-c decodes must format back.
 */
static void
check_line(struct json_tokener *tok, const char *line, size_t len)
{
	struct proto_scratch	 scratch;
	struct proto_request	 fast, slow;
	struct json_object	*obj = NULL;
	const char		*msg;
	int			 fast_ok, slow_ok;

	fast_ok = proto_request_scan(line, len, &scratch, &fast) == 0;
	slow_ok = proto_parse_line(tok, line, len, &obj) == 0 &&
	    proto_request_decode(obj, &slow, &msg) == PROTO_OK;
	if (fast_ok && !slow_ok)
		abort();
	if (fast_ok) {
		compare_fields(&fast, &slow);
		compare_id(&fast, &slow);
	}
	if (slow_ok)
		check_format(tok, &slow);
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
