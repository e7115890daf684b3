/*
 * Unit tests for the consul-template engine (agent/ctmpl.c): templates from
 * the Vault Agent / vault-k8s injector documentation with the output Go's
 * text/template and consul-template give them (written by hand from their
 * rules), the constructs refused at parse time with their line and column,
 * the secret calls a template names, and the bounds.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ctmpl.h"
#include "secretfs/error.h"
#include "secretfs/render.h"
#include "secretfs/secjson.h"
#include "secretfs/secmem.h"
#include "test.h"

#define SECRET "Sup3rS3cretValue"

/* A dynamic database credential, as Vault returns it. */
static const char *const DB_REPLY =
    "{\"request_id\":\"r-1\",\"lease_id\":\"database/creds/app/"
    "abc\",\"lease_duration\":3600,"
    "\"renewable\":true,\"data\":{\"username\":\"v-app-xyz\",\"password\":\"" SECRET
    "\"}}";

/* A KV v2 read of secret/data/app/config. */
static const char *const KV2_REPLY =
    "{\"lease_id\":\"\",\"lease_duration\":0,\"renewable\":false,\"data\":{"
    "\"data\":{\"api_key\":\"k1\",\"env\":\"dev\",\"api-key\":\"dash\",\"port\":5432,"
    "\"zero\":0,\"nested\":{\"b\":\"2\",\"a\":\"1\"},\"list\":[\"x\",\"y\"],"
    "\"mixed\":[true,null,1.5],\"null\":null,\"flag\":false,\"empty\":\"\","
    "\"html\":\"<a&b>\",\"password\":\"" SECRET "\"},"
    "\"metadata\":{\"version\":3,\"created_time\":\"2024-01-01T00:00:00Z\",\"destroyed\":"
    "false}}}";

static int rc_;
static char err_[512];
static char out_[8192];
static size_t out_len_;
static size_t nsecrets_;

static void setup(void)
{
	static bool done;

	if (!done) {
		secjson_init();
		if (secmem_init() != 0)
			abort();
		done = true;
	}
}

static json_t *J(const char *text)
{
	json_error_t e;
	json_t *v = json_loads(text, 0, &e);

	if (!v) {
		fprintf(stderr, "test JSON does not parse: %s\n", e.text);
		abort();
	}
	return v;
}

/* Parses tpl and renders it with reply (JSON text) for every secret it names,
 * into an output buffer of at most max bytes. */
static void run_max(const char *tpl, size_t len, const char *reply, size_t max)
{
	struct ctmpl *t = NULL;
	json_t *r = NULL;
	const json_t *replies[CTMPL_MAX_SECRETS];
	struct secbuf out;

	setup();
	memset(err_, 0, sizeof err_);
	memset(out_, 0, sizeof out_);
	out_len_ = 0;
	nsecrets_ = 0;
	rc_ = ctmpl_parse(tpl, len, &t, err_, sizeof err_);
	if (rc_ != 0)
		return;
	nsecrets_ = ctmpl_secret_count(t);
	r = J(reply ? reply : "{}");
	for (size_t i = 0; i < nsecrets_; i++)
		replies[i] = r;
	secbuf_init(&out, max);
	rc_ = ctmpl_render(t, replies, &out, err_, sizeof err_);
	out_len_ = out.len;
	if (out.len && out.len < sizeof out_)
		memcpy(out_, out.data, out.len);
	if (rc_ != 0)
		CHECK(out.data == NULL && out.len == 0);
	secbuf_release(&out);
	json_decref(r);
	ctmpl_free(t);
}

static void run(const char *tpl, const char *reply)
{
	run_max(tpl, strlen(tpl), reply, RENDER_MAX_LEN);
}

#define CHECK_OUT(expect)                                                                \
	do {                                                                             \
		if (rc_ != 0)                                                            \
			fprintf(stderr, "  error: %s\n", err_);                          \
		CHECK_EQ_INT(rc_, 0);                                                    \
		CHECK_STR_EQ(out_, expect);                                              \
		CHECK_EQ_INT(out_len_, strlen(expect));                                  \
	} while (0)

#define CHECK_FAILS(code, msg)                                                           \
	do {                                                                             \
		CHECK_EQ_INT(rc_, code);                                                 \
		CHECK_STR_CONTAINS(err_, msg);                                           \
		CHECK(strstr(err_, SECRET) == NULL);                                     \
		CHECK_EQ_INT(out_len_, 0);                                               \
	} while (0)

/* ---- templates from the documentation ---------------------------------- */

TEST(test_database_url_from_issue)
{
	run("{{ with secret \"database/creds/app\" }}postgres://{{ .Data.username }}:"
	    "{{ .Data.password }}@db/app{{ end }}",
	    DB_REPLY);
	CHECK_OUT("postgres://v-app-xyz:" SECRET "@db/app");
	CHECK_EQ_INT(nsecrets_, 1);
}

TEST(test_injector_doc_database_template_trims)
{
	run("{{- with secret \"database/creds/db-app\" -}}\n"
	    "postgres://{{ .Data.username }}:{{ .Data.password "
	    "}}@postgres:5432/appdb?sslmode=disable\n"
	    "{{- end }}\n",
	    DB_REPLY);
	CHECK_OUT("postgres://v-app-xyz:" SECRET
	          "@postgres:5432/appdb?sslmode=disable\n");
}

TEST(test_injector_doc_export_env_kv2)
{
	run("{{ with secret \"secret/data/web\" -}}\n"
	    "  export api_key=\"{{ .Data.data.api_key }}\"\n"
	    "{{- end }}",
	    KV2_REPLY);
	CHECK_OUT("export api_key=\"k1\"");
}

TEST(test_range_over_kv2_map_sorted_keys)
{
	run("{{ with secret \"secret/data/app/config\" }}{{ range $k, $v := "
	    ".Data.data.nested }}"
	    "{{ $k }}={{ $v }}\n{{ end }}{{ end }}",
	    KV2_REPLY);
	CHECK_OUT("a=1\nb=2\n");
}

TEST(test_range_prints_each_type_as_go)
{
	run("{{ with secret \"s\" }}{{ range $k, $v := .Data.data }}{{ if ne $k "
	    "\"password\" }}"
	    "{{ $k }}={{ $v }};{{ end }}{{ end }}{{ end }}",
	    KV2_REPLY);
	CHECK_OUT("api-key=dash;api_key=k1;empty=;env=dev;flag=false;html=<a&b>;"
	          "list=[x y];mixed=[true <nil> 1.5];nested=map[a:1 b:2];null=<no value>;"
	          "port=5432;zero=0;");
}

TEST(test_range_one_variable_list_and_dot)
{
	run("{{ with secret \"s\" }}{{ range $e := .Data.data.list }}<{{ $e }}>{{ end }}"
	    "{{ range .Data.data.list }}({{ . }}){{ end }}"
	    "{{ range $i, $e := .Data.data.list }}{{ $i }}:{{ $e }} {{ end }}{{ end }}",
	    KV2_REPLY);
	CHECK_OUT("<x><y>(x)(y)0:x 1:y ");
}

TEST(test_range_else_on_empty_and_missing)
{
	run("{{ with secret \"s\" }}{{ range .Data.data.missing }}x{{ else }}none{{ end "
	    "}}|"
	    "{{ range split \",\" \"  \" }}x{{ else }}empty{{ end }}{{ end }}",
	    KV2_REPLY);
	CHECK_OUT("none|empty");
}

TEST(test_pki_write_with_parameters)
{
	const char *reply = "{\"data\":{\"certificate\":\"CERT\",\"issuing_ca\":\"CA\","
	                    "\"private_key\":\"KEY\"}}";
	run("{{- with secret \"pki/issue/web\" \"common_name=web.svc\" \"ttl=24h\" -}}\n"
	    "{{ .Data.certificate }}\n{{ .Data.issuing_ca }}\n{{- end }}\n",
	    reply);
	CHECK_OUT("CERT\nCA\n");
}

TEST(test_secret_struct_fields)
{
	run("{{ with secret \"database/creds/app\" }}{{ .LeaseID }} {{ .LeaseDuration }} "
	    "{{ .Renewable }} {{ .RequestID }}{{ end }}",
	    DB_REPLY);
	CHECK_OUT("database/creds/app/abc 3600 true r-1");
	run("{{ with secret \"a\" }}{{ .Warnings }}{{ end }}", DB_REPLY);
	CHECK_FAILS(SFS_EINVAL,
	            "line 1, column 25: the Warnings field of a secret is not supported");
	run("{{ with secret \"a\" }}{{ .data }}{{ end }}", DB_REPLY);
	CHECK_FAILS(SFS_EINVAL, "can't evaluate field data in type *dependency.Secret");
	run("{{ secret \"a\" }}", DB_REPLY);
	CHECK_FAILS(SFS_EINVAL, "printing a whole secret is not supported");
}

TEST(test_kv2_metadata)
{
	run("{{ with secret \"secret/data/app/config\" }}v{{ .Data.metadata.version }} "
	    "{{ .Data.metadata.created_time }} {{ .Data.metadata.destroyed }}{{ end }}",
	    KV2_REPLY);
	CHECK_OUT("v3 2024-01-01T00:00:00Z false");
}

TEST(test_missing_key_prints_no_value_field_of_it_fails)
{
	run("{{ with secret \"s\" }}[{{ .Data.data.missing }}][{{ .Data.nope }}]{{ end "
	    "}}",
	    KV2_REPLY);
	CHECK_OUT("[<no value>][<no value>]");
	run("{{ with secret \"s\" }}\n{{ .Data.data.missing.x }}{{ end }}", KV2_REPLY);
	CHECK_FAILS(SFS_EINVAL,
	            "line 2, column 4: nil pointer evaluating interface {}.x");
	run("{{ with secret \"s\" }}{{ .Data.data.password.x }}{{ end }}", KV2_REPLY);
	CHECK_FAILS(SFS_EINVAL, "can't evaluate field x in type string");
	/* Outside with, the data is nil: fields of it are no value. */
	run("{{ .Data.x }}", NULL);
	CHECK_OUT("<no value>");
}

TEST(test_with_skips_empty_values)
{
	run("{{ with secret \"s\" }}{{ with .Data.data.missing }}X{{ else }}a{{ end }}"
	    "{{ with .Data.data.empty }}X{{ else }}b{{ end }}"
	    "{{ with .Data.data.flag }}X{{ else }}c{{ end }}"
	    "{{ with .Data.data.null }}X{{ else }}d{{ end }}"
	    "{{ with .Data.data.nested }}{{ .a }}{{ end }}{{ end }}",
	    KV2_REPLY);
	CHECK_OUT("abcd1");
}

TEST(test_numbers_are_json_numbers)
{
	/* Vault's numbers are json.Number: strings, so 0 is true and eq takes "5432". */
	run("{{ with secret \"s\" }}{{ if .Data.data.zero }}T{{ end }}"
	    "{{ if eq .Data.data.port \"5432\" }}E{{ end }}{{ end }}",
	    KV2_REPLY);
	CHECK_OUT("TE");
	run("{{ with secret \"s\" }}{{ if eq .Data.data.port 5432 }}E{{ end }}{{ end }}",
	    KV2_REPLY);
	CHECK_FAILS(SFS_EINVAL, "incompatible types for comparison: json.Number and int");
}

TEST(test_if_else_if_else)
{
	const char *tpl =
	    "{{ with secret \"s\" }}{{ if eq .Data.data.env \"prod\" }}P"
	    "{{ else if eq .Data.data.env \"dev\" }}D{{ else }}O{{ end }}{{ end }}";
	run(tpl, KV2_REPLY);
	CHECK_OUT("D");
	run("{{ if false }}a{{ else if not true }}b{{ else if and 1 0 }}c{{ else }}d{{ "
	    "end }}",
	    NULL);
	CHECK_OUT("d");
}

TEST(test_and_or_return_values_len)
{
	run("{{ or \"\" \"x\" }}{{ and \"a\" \"b\" }}{{ or 0 false }}{{ len \"abc\" }}"
	    "{{ len (split \",\" \"a,b\") }}",
	    NULL);
	CHECK_OUT("xbfalse32");
}

TEST(test_variables_declare_assign_and_scope)
{
	run("{{ $s := secret \"database/creds/app\" }}{{ $s.Data.username }}", DB_REPLY);
	CHECK_OUT("v-app-xyz");
	run("{{ $x := \"a\" }}{{ if true }}{{ $x = \"b\" }}{{ end }}{{ $x }}", NULL);
	CHECK_OUT("b");
	run("{{ with $c := secret \"a\" }}{{ $c.Data.username }}/{{ $.x }}{{ end }}",
	    DB_REPLY);
	CHECK_OUT("v-app-xyz/<no value>");
	run("{{ if true }}{{ $y := 1 }}{{ end }}{{ $y }}", NULL);
	CHECK_FAILS(SFS_EINVAL, "line 1, column 39: undefined variable \"$y\"");
}

TEST(test_trim_markers_exact)
{
	run("a  \n {{- \"b\" -}} \n\t c", NULL);
	CHECK_OUT("abc");
	run("a {{-3}} b", NULL);
	CHECK_OUT("a -3 b");
	run("a {{- 3 }} b", NULL);
	CHECK_OUT("a3 b");
	run("x{{/* a comment */}}y {{- /* c */ -}} z", NULL);
	CHECK_OUT("xyz");
	run("{{ \"a\" }}}}{{ 1 }}", NULL);
	CHECK_OUT("a}}1");
}

TEST(test_to_json_like_go)
{
	run("{{ with secret \"s\" }}{{ .Data.data.nested | toJSON }} {{ .Data.data.mixed "
	    "| toJSON }} "
	    "{{ .Data.data.html | toJSON }} {{ .Data.data.missing | toJSON }}{{ end }}",
	    KV2_REPLY);
	CHECK_OUT(
	    "{\"a\":\"1\",\"b\":\"2\"} [true,null,1.5] \"\\u003ca\\u0026b\\u003e\" null");
	run("{{ \"\\n\\t\\b\\f\\x01\\u2028\\x80é\" | toJSON }}", NULL);
	CHECK_OUT("\"\\n\\t\\b\\f\\u0001\\u2028\\ufffdé\"");
}

TEST(test_to_json_pretty_two_spaces)
{
	const char *reply =
	    "{\"data\":{\"b\":{\"c\":\"d\",\"n\":[1,2]},\"a\":[],\"e\":{}}}";
	run("{{ with secret \"s\" }}{{ .Data | toJSONPretty }}{{ end }}", reply);
	CHECK_OUT("{\n  \"a\": [],\n  \"b\": {\n    \"c\": \"d\",\n    \"n\": [\n      "
	          "1,\n      2\n"
	          "    ]\n  },\n  \"e\": {}\n}");
	run("{{ with secret \"s\" }}{{ .Data.b.n | toJSONPretty }}{{ end }}", reply);
	CHECK_FAILS(SFS_EINVAL, "expected map[string]interface {}; got []interface {}");
}

TEST(test_base64)
{
	run("{{ \"hello\" | base64Encode }} {{ base64Decode \"aGVs\\nbG8=\" }} {{ \"\" | "
	    "base64Encode }}",
	    NULL);
	CHECK_OUT("aGVsbG8= hello ");
	run("{{ base64Decode \"aGVsbG8\" }}", NULL);
	CHECK_FAILS(SFS_EINVAL, "base64Decode: input is not valid padded base64");
	run("{{ with secret \"s\" }}{{ .Data.data.port | base64Encode }}{{ end }}",
	    KV2_REPLY);
	CHECK_FAILS(SFS_EINVAL, "expected string; got json.Number");
}

TEST(test_string_functions)
{
	run("{{ \"  x Y \\n\" | trimSpace | toUpper }}|{{ toLower \"AbC\" }}|"
	    "{{ \"a-b-c\" | replaceAll \"-\" \"_\" }}|{{ \"ab\" | replaceAll \"\" \".\" "
	    "}}|"
	    "{{ \"\\u00a0 z\\u3000\" | trimSpace }}",
	    NULL);
	CHECK_OUT("X Y|abc|a_b_c|.a.b.|z");
	run("{{ toUpper \"é\" }}", NULL);
	CHECK_FAILS(SFS_EINVAL, "toUpper of non-ASCII text is not supported");
}

TEST(test_split_join)
{
	run("{{ \"a,b,,c\" | split \",\" | join \";\" }}|{{ split \",\" \" a,b \" }}|"
	    "{{ range split \"\" \"hé\" }}<{{ . }}>{{ end }}|{{ index (split \",\" "
	    "\"p,q\") 1 }}",
	    NULL);
	CHECK_OUT("a;b;;c|[a b]|<h><é>|q");
	run("{{ with secret \"s\" }}{{ .Data.data.list | join \",\" }}{{ end }}",
	    KV2_REPLY);
	CHECK_FAILS(SFS_EINVAL, "expected []string; got []interface {}");
}

TEST(test_printf_safe_verbs)
{
	run("{{ printf \"%s:%d:%v:%q:%%\" \"a\" 5 true \"q\\\"\\n\" }}", NULL);
	CHECK_OUT("a:5:true:\"q\\\"\\n\":%");
	run("{{ with secret \"s\" }}{{ printf \"%s/%v/%v\" .Data.data.port "
	    ".Data.data.missing "
	    ".Data.data.list }}{{ .Data.data.env | printf \"env=%s\" }}{{ end }}",
	    KV2_REPLY);
	CHECK_OUT("5432/<nil>/[x y]env=dev");
	run("{{ with secret \"s\" }}{{ printf \"%d\" .Data.data.port }}{{ end }}",
	    KV2_REPLY);
	CHECK_FAILS(SFS_EINVAL, "printf %d of a json.Number is not supported");
	run("{{ printf \"%s\" 5 }}", NULL);
	CHECK_FAILS(SFS_EINVAL, "printf %s of a int is not supported");
}

TEST(test_index)
{
	run("{{ with secret \"s\" }}{{ index .Data.data \"api-key\" }} {{ index "
	    ".Data.data.list 1 }} "
	    "{{ index .Data \"data\" \"nested\" \"b\" }} {{ index .Data.data \"nope\" "
	    "}}{{ end }}",
	    KV2_REPLY);
	CHECK_OUT("dash y 2 <no value>");
	run("{{ with secret \"s\" }}{{ index .Data.data.list 2 }}{{ end }}", KV2_REPLY);
	CHECK_FAILS(SFS_EINVAL, "index out of range: 2");
	run("{{ with secret \"s\" }}{{ index .Data.data.password 0 }}{{ end }}",
	    KV2_REPLY);
	CHECK_FAILS(SFS_EINVAL, "can't index item of type string");
}

TEST(test_parenthesised_pipeline_chain)
{
	run("{{ (secret \"database/creds/app\").Data.username }}", DB_REPLY);
	CHECK_OUT("v-app-xyz");
}

/* ---- the secrets a template names -------------------------------------- */

TEST(test_secret_calls_distinct_and_sorted_params)
{
	struct ctmpl *t = NULL;
	const char *path;
	const char *const *params;
	size_t np;
	const char *tpl = "{{ with secret \"database/creds/app\" }}{{ end }}"
	                  "{{ with secret \"pki/issue/web\" \"ttl=24h\" "
	                  "\"common_name=web.svc\" }}{{ end }}"
	                  "{{ with secret \"pki/issue/web\" \"common_name=web.svc\" "
	                  "\"ttl=24h\" }}{{ end }}"
	                  "{{ with secret \"database/creds/app\" }}{{ end }}";

	setup();
	CHECK_EQ_INT(ctmpl_parse(tpl, strlen(tpl), &t, err_, sizeof err_), 0);
	CHECK_EQ_INT(ctmpl_secret_count(t), 2);
	CHECK_EQ_INT(ctmpl_secret_at(t, 0, &path, &params, &np), 0);
	CHECK_STR_EQ(path, "database/creds/app");
	CHECK_EQ_INT(np, 0);
	CHECK_EQ_INT(ctmpl_secret_at(t, 1, &path, &params, &np), 0);
	CHECK_STR_EQ(path, "pki/issue/web");
	CHECK_EQ_INT(np, 2);
	CHECK_STR_EQ(params[0], "common_name=web.svc");
	CHECK_STR_EQ(params[1], "ttl=24h");
	CHECK_EQ_INT(ctmpl_secret_at(t, 2, &path, &params, &np), SFS_EINVAL);
	ctmpl_free(t);
	ctmpl_free(NULL);
}

TEST(test_each_secret_call_renders_its_own_reply)
{
	struct ctmpl *t = NULL;
	struct secbuf out;
	const char *tpl = "{{ with secret \"a\" }}{{ .Data.x }}{{ end }}-"
	                  "{{ with secret \"b\" }}{{ .Data.x }}{{ end }}";
	json_t *a = J("{\"data\":{\"x\":\"A\"}}"), *b = J("{\"data\":{\"x\":\"B\"}}");
	const json_t *replies[2] = {a, b};

	setup();
	CHECK_EQ_INT(ctmpl_parse(tpl, strlen(tpl), &t, err_, sizeof err_), 0);
	secbuf_init(&out, RENDER_MAX_LEN);
	CHECK_EQ_INT(ctmpl_render(t, replies, &out, err_, sizeof err_), 0);
	CHECK_EQ_INT(out.len, 3);
	CHECK(out.len == 3 && memcmp(out.data, "A-B", 3) == 0);
	secbuf_release(&out);
	ctmpl_free(t);
	json_decref(a);
	json_decref(b);
}

TEST(test_secret_refusals)
{
	run("{{ secret \"a\" \"noequals\" }}", NULL);
	CHECK_FAILS(SFS_EINVAL, "line 1, column 15: secret parameter is not of the form");
	run("{{ \"a\" | secret }}", NULL);
	CHECK_FAILS(SFS_EINVAL, "not from a pipe");
	run("{{ secret (printf \"a\") }}", NULL);
	CHECK_FAILS(SFS_EINVAL, "as string literals");
	run("{{ secret \"\" }}", NULL);
	CHECK_FAILS(SFS_EINVAL, "secret path is empty");
	run("{{ secret \"p\" \"a=1\" \"a=2\" }}", NULL);
	CHECK_FAILS(SFS_EINVAL, "key given twice");
}

/* ---- refused constructs, with their position ---------------------------- */

TEST(test_env_refused)
{
	run("x\n{{ env \"HOME\" }}", NULL);
	CHECK_FAILS(SFS_EINVAL, "line 2, column 4: function \"env\" is refused");
	run("{{ with secret (env \"P\") }}{{ end }}", NULL);
	CHECK_FAILS(SFS_EINVAL, "line 1, column 17: function \"env\" is refused");
}

TEST(test_unsupported_functions_and_actions_refused)
{
	run("{{ with secret \"a\" }}\n  {{ key \"x\" }}{{ end }}", NULL);
	CHECK_FAILS(SFS_EINVAL, "line 2, column 6: function \"key\" is not supported");
	run("{{ define \"x\" }}{{ end }}", NULL);
	CHECK_FAILS(SFS_EINVAL, "line 1, column 4: {{define}} is not supported");
	run("{{ template \"x\" }}", NULL);
	CHECK_FAILS(SFS_EINVAL, "{{template}} is not supported");
	run("{{ range split \",\" \"a\" }}{{ break }}{{ end }}", NULL);
	CHECK_FAILS(SFS_EINVAL, "{{break}} is not supported");
	run("{{ nosuch 1 }}", NULL);
	CHECK_FAILS(SFS_EINVAL, "line 1, column 4: function \"nosuch\" not defined");
	run("{{ print \"a\" }}", NULL);
	CHECK_FAILS(SFS_EINVAL, "function \"print\" is not supported");
	run("{{ nil }}", NULL);
	CHECK_FAILS(SFS_EINVAL, "unexpected \"nil\" in operand");
	run("{{ with .a }}{{ else with .b }}{{ end }}", NULL);
	CHECK_FAILS(SFS_EINVAL, "{{else with}} is not supported in {{with}}");
}

TEST(test_printf_refusals)
{
	run("{{ printf \"%5s\" \"a\" }}", NULL);
	CHECK_FAILS(SFS_EINVAL, "printf supports only the verbs");
	run("{{ printf \"%x\" \"a\" }}", NULL);
	CHECK_FAILS(SFS_EINVAL, "printf supports only the verbs");
	run("{{ printf \"%s %s\" \"a\" }}", NULL);
	CHECK_FAILS(SFS_EINVAL, "printf format has 2 verbs for 1 values");
	run("{{ \"%s\" | printf }}", NULL);
	CHECK_FAILS(SFS_EINVAL, "printf format must be a string literal");
}

TEST(test_literal_refusals)
{
	run("{{ 1.5 }}", NULL);
	CHECK_FAILS(SFS_EINVAL, "line 1, column 4: number syntax not supported");
	run("{{ 0x10 }}", NULL);
	CHECK_FAILS(SFS_EINVAL, "number syntax not supported");
	run("{{ 'a' }}", NULL);
	CHECK_FAILS(SFS_EINVAL, "character constants are not supported");
	run("{{ \"a\\q\" }}", NULL);
	CHECK_FAILS(SFS_EINVAL, "unknown escape sequence");
	run("{{ \"abc }}", NULL);
	CHECK_FAILS(SFS_EINVAL, "unterminated quoted string");
}

TEST(test_syntax_errors_with_position)
{
	run("a\n\n  {{ if .x }}b", NULL);
	CHECK_FAILS(SFS_EINVAL, "line 3, column 6: unclosed {{if}}");
	run("{{ end }}", NULL);
	CHECK_FAILS(SFS_EINVAL, "line 1, column 4: unexpected {{end}}");
	run("{{ $x }}", NULL);
	CHECK_FAILS(SFS_EINVAL, "line 1, column 4: undefined variable \"$x\"");
	run("{{ .a | .b }}", NULL);
	CHECK_FAILS(SFS_EINVAL, "non executable command in pipeline stage 2");
	run("{{ \"a\" \"b\" }}", NULL);
	CHECK_FAILS(SFS_EINVAL, "can't give argument to non-function");
	run("ok {{ .x", NULL);
	CHECK_FAILS(SFS_EINVAL, "line 1, column 4: unclosed action");
	run("{{ range .x }}{{ else }}{{ else }}{{ end }}", NULL);
	CHECK_FAILS(SFS_EINVAL, "expected end; found else");
	run("{{ toUpper }}", NULL);
	CHECK_FAILS(SFS_EINVAL, "wrong number of arguments for toUpper: want 1, got 0");
	run("{{ $a, $b := .x }}", NULL);
	CHECK_FAILS(SFS_EINVAL, "too many declarations");
	run("{{ /* not a comment */ }}", NULL);
	CHECK_FAILS(SFS_EINVAL, "unexpected character '/'");
	run("{{/* open", NULL);
	CHECK_FAILS(SFS_EINVAL, "unclosed comment");
	run("{{}}", NULL);
	CHECK_FAILS(SFS_EINVAL, "missing value");
	run("{{ toUpper \"a\" | }}", NULL);
	CHECK_FAILS(SFS_EINVAL, "missing command after |");
}

/* ---- bounds ------------------------------------------------------------- */

/* Appends s to the NUL-terminated text in buf (cap bytes); a test that
 * outgrows its buffer is a bug in the test: abort. */
static void append(char *buf, size_t cap, const char *s)
{
	size_t used = strlen(buf);

	if ((size_t)snprintf(buf + used, cap - used, "%s", s) >= cap - used)
		abort();
}

TEST(test_deep_nesting_refused)
{
	char tpl[2048] = "";

	for (int i = 0; i < CTMPL_MAX_DEPTH + 1; i++)
		append(tpl, sizeof tpl, "{{if 1}}");
	run(tpl, NULL);
	CHECK_FAILS(SFS_ETOOBIG, "nesting deeper than");
	tpl[0] = '\0';
	append(tpl, sizeof tpl, "{{ ");
	for (int i = 0; i < CTMPL_MAX_DEPTH + 1; i++)
		append(tpl, sizeof tpl, "(");
	append(tpl, sizeof tpl, "1");
	for (int i = 0; i < CTMPL_MAX_DEPTH + 1; i++)
		append(tpl, sizeof tpl, ")");
	append(tpl, sizeof tpl, " }}");
	run(tpl, NULL);
	CHECK_FAILS(SFS_ETOOBIG, "nesting deeper than");
	tpl[0] = '\0';
	for (int i = 0; i < CTMPL_MAX_DEPTH; i++)
		append(tpl, sizeof tpl, "{{if 1}}");
	append(tpl, sizeof tpl, "x");
	for (int i = 0; i < CTMPL_MAX_DEPTH; i++)
		append(tpl, sizeof tpl, "{{end}}");
	run(tpl, NULL);
	CHECK_OUT("x");
}

TEST(test_huge_output_refused)
{
	size_t n = 700 * 1024;
	char *big = malloc(n + 64);

	if (!big)
		abort();
	memcpy(big, "{\"data\":{\"big\":\"", 16);
	memset(big + 16, 'a', n);
	memcpy(big + 16 + n, "\"}}", sizeof "\"}}");
	run("{{ with secret \"s\" }}{{ .Data.big }}{{ .Data.big }}{{ end }}", big);
	CHECK_FAILS(SFS_ETOOBIG, "larger than");
	run("{{ with secret \"s\" }}{{ .Data.big | toJSON | toJSON }}{{ end }}", big);
	CHECK_EQ_INT(rc_, 0);
	free(big);
	run_max("0123456789ab", 12, NULL, 10);
	CHECK_FAILS(SFS_ETOOBIG, "larger than");
}

TEST(test_runaway_loops_refused)
{
	run("{{ $l := split \",\" \"0,1,2,3,4,5,6,7,8,9,0,1,2,3,4,5,6,7,8,9\" }}"
	    "{{ range $l }}{{ range $l }}{{ range $l }}{{ range $l }}{{ range $l }}"
	    "{{ end }}{{ end }}{{ end }}{{ end }}{{ end }}",
	    NULL);
	CHECK_FAILS(SFS_ETOOBIG, "rendering takes more than");
}

TEST(test_template_size_and_secret_count_bounds)
{
	size_t n = CTMPL_MAX_TEXT + 1;
	char *tpl = malloc(n);
	char buf[8192] = "";

	if (!tpl)
		abort();
	memset(tpl, 'a', n);
	run_max(tpl, n, NULL, RENDER_MAX_LEN);
	CHECK_FAILS(SFS_ETOOBIG, "larger than");
	free(tpl);
	for (int i = 0; i <= CTMPL_MAX_SECRETS; i++) {
		char one[64];
		snprintf(one, sizeof one, "{{ with secret \"p%d\" }}{{ end }}", i);
		append(buf, sizeof buf, one);
	}
	run(buf, NULL);
	CHECK_FAILS(SFS_ETOOBIG, "names more than 64 secrets");
}

TEST(test_errors_never_quote_values)
{
	run("{{ with secret \"s\" }}{{ .Data.data.password | printf \"%d\" }}{{ end }}",
	    KV2_REPLY);
	CHECK_FAILS(SFS_EINVAL, "printf %d of a string");
	run("{{ with secret \"s\" }}{{ .Data.data.html | base64Decode }}{{ end }}",
	    KV2_REPLY);
	CHECK_FAILS(SFS_EINVAL, "base64Decode: input is not valid");
	run("{{ with secret \"s\" }}{{ index .Data.data.password \"" SECRET
	    "\" }}{{ end }}",
	    KV2_REPLY);
	CHECK_FAILS(SFS_EINVAL, "can't index item of type string");
}

TEST_MAIN(test_database_url_from_issue, test_injector_doc_database_template_trims,
          test_injector_doc_export_env_kv2, test_range_over_kv2_map_sorted_keys,
          test_range_prints_each_type_as_go, test_range_one_variable_list_and_dot,
          test_range_else_on_empty_and_missing, test_pki_write_with_parameters,
          test_secret_struct_fields, test_kv2_metadata,
          test_missing_key_prints_no_value_field_of_it_fails,
          test_with_skips_empty_values, test_numbers_are_json_numbers,
          test_if_else_if_else, test_and_or_return_values_len,
          test_variables_declare_assign_and_scope, test_trim_markers_exact,
          test_to_json_like_go, test_to_json_pretty_two_spaces, test_base64,
          test_string_functions, test_split_join, test_printf_safe_verbs, test_index,
          test_parenthesised_pipeline_chain, test_secret_calls_distinct_and_sorted_params,
          test_each_secret_call_renders_its_own_reply, test_secret_refusals,
          test_env_refused, test_unsupported_functions_and_actions_refused,
          test_printf_refusals, test_literal_refusals, test_syntax_errors_with_position,
          test_deep_nesting_refused, test_huge_output_refused, test_runaway_loops_refused,
          test_template_size_and_secret_count_bounds, test_errors_never_quote_values)
