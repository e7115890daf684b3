/*
 * Rendering: the first byte picks the format and base64 decoding, then
 * NUL-separated parts give the field, the template and the JSON value.
 */
#include "fuzz.h"
#include "secretfs/render.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *parts[3] = {"", "", ""};
	struct render_spec spec = {0};
	struct secbuf out;
	struct backend_error err;
	char *buf;
	json_t *value;

	if (size < 1)
		return 0;
	fuzz_split(data + 1, size - 1, &buf, parts, 3);
	spec.format = (enum render_format)(data[0] % 4);
	spec.decode_base64 = data[0] & 0x10;
	spec.field = (data[0] & 0x20) && parts[0][0] ? parts[0] : NULL;
	spec.template_text = parts[1];
	value = json_loads(parts[2], JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
	if (!value)
		value = json_string(parts[2]);
	if (value) {
		secbuf_init(&out, RENDER_MAX_LEN);
		if (render(&spec, value, &out, &err) == 0 && out.len > RENDER_MAX_LEN)
			abort();
		secbuf_release(&out);
		json_decref(value);
	}
	free(buf);
	return 0;
}
