/*
 * consul-template templates (agent/ctmpl.c): the input is a template; it is
 * parsed and, when it parses, rendered with one fixed Vault reply (KV v2
 * shape with every JSON type, lease fields) for every secret it names.
 */
#include "ctmpl.h"
#include "fuzz.h"
#include "secretfs/render.h"

static const char REPLY[] =
    "{\"request_id\":\"r\",\"lease_id\":\"l/1\",\"lease_duration\":60,\"renewable\":true,"
    "\"data\":{\"username\":\"u\",\"password\":\"p<&>\\u2028\",\"b64\":\"aGVsbG8=\","
    "\"data\":{\"k\":\"v\",\"n\":5,\"r\":1.5,\"t\":true,\"z\":null,\"l\":[\"a\",1,null,{}"
    "],"
    "\"m\":{\"x\":{\"y\":\"deep\"}},\"e\":\"\",\"csv\":\"a,b, c\"},"
    "\"metadata\":{\"version\":2}}}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static json_t *reply;
	const json_t *replies[CTMPL_MAX_SECRETS];
	struct ctmpl *t = NULL;
	struct secbuf out;
	char err[256];

	if (!reply && !(reply = json_loads(REPLY, 0, NULL)))
		abort();
	if (ctmpl_parse((const char *)data, size, &t, err, sizeof err) != 0)
		return 0;
	for (size_t i = 0; i < ctmpl_secret_count(t); i++)
		replies[i] = reply;
	secbuf_init(&out, RENDER_MAX_LEN);
	if (ctmpl_render(t, replies, &out, err, sizeof err) == 0 &&
	    out.len > RENDER_MAX_LEN)
		abort();
	secbuf_release(&out);
	ctmpl_free(t);
	return 0;
}
