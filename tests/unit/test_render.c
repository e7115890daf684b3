/*
 * Unit tests for rendering (render.c): field selection, base64 decoding, the
 * raw/json/env/template formats, the output size cap, and error messages
 * that name keys but never values.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "secretfs/error.h"
#include "secretfs/render.h"
#include "secretfs/secjson.h"
#include "secretfs/secmem.h"
#include "test.h"

#define SECRET "Sup3rS3cretValue"

static int rc_;
static char err_[256];
static char out_[4096];
static size_t out_len_;

static void setup(void)
{
	secjson_init();
	if (secmem_init() != 0)
		abort();
}

static json_t *parse(const char *text)
{
	json_error_t e;
	json_t *v;

	setup();
	v = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
	if (!v) {
		fprintf(stderr, "test JSON does not parse: %s: %s\n", text, e.text);
		abort();
	}
	return v;
}

/* Renders json_text and keeps rc, err and a NUL-terminated copy of the output. */
static void run(enum render_format fmt, const char *field, const char *tpl, bool b64,
                const char *json_text)
{
	struct render_spec spec = {fmt, field, tpl, b64};
	json_t *v = parse(json_text);
	struct secbuf out;

	secbuf_init(&out, RENDER_MAX_LEN);
	struct backend_error e;

	memset(e.msg, 'x', sizeof e.msg - 1);
	e.msg[sizeof e.msg - 1] = '\0';
	rc_ = render(&spec, v, &out, &e);
	snprintf(err_, sizeof err_, "%s", e.msg);
	out_len_ = out.len;
	memset(out_, 0, sizeof(out_));
	if (out.len && out.len < sizeof(out_))
		memcpy(out_, out.data, out.len);
	if (rc_ != 0)
		CHECK(out.data == NULL && out.len == 0);
	secbuf_release(&out);
	json_decref(v);
}

#define CHECK_OUT(expect)                                                                \
	do {                                                                             \
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

/* --- raw --- */

TEST(test_raw_string_is_its_bytes)
{
	run(RENDER_RAW, NULL, NULL, false, "\"" SECRET "\"");
	CHECK_OUT(SECRET);
	run(RENDER_RAW, NULL, NULL, false, "\"caf\\u00e9 \\\"q\\\"\\n\"");
	CHECK_OUT("caf\xc3\xa9 \"q\"\n");
}

TEST(test_raw_string_keeps_nul_bytes)
{
	run(RENDER_RAW, NULL, NULL, false, "\"a\\u0000b\"");
	CHECK_EQ_INT(rc_, 0);
	CHECK_EQ_INT(out_len_, 3);
	CHECK(memcmp(out_, "a\0b", 3) == 0);
}

TEST(test_raw_numbers_booleans_null_as_json_text)
{
	run(RENDER_RAW, NULL, NULL, false, "42");
	CHECK_OUT("42");
	run(RENDER_RAW, NULL, NULL, false, "-9223372036854775807");
	CHECK_OUT("-9223372036854775807");
	run(RENDER_RAW, NULL, NULL, false, "0.1");
	CHECK_OUT("0.1");
	run(RENDER_RAW, NULL, NULL, false, "3.0");
	CHECK_OUT("3.0");
	run(RENDER_RAW, NULL, NULL, false, "1e100");
	CHECK_OUT("1e+100");
	run(RENDER_RAW, NULL, NULL, false, "true");
	CHECK_OUT("true");
	run(RENDER_RAW, NULL, NULL, false, "false");
	CHECK_OUT("false");
	run(RENDER_RAW, NULL, NULL, false, "null");
	CHECK_OUT("null");
}

TEST(test_raw_object_is_compact_json_with_sorted_keys)
{
	run(RENDER_RAW, NULL, NULL, false,
	    "{ \"b\": 1, \"a\": { \"d\": [1, \"x\", 2.5], \"c\": null } }");
	CHECK_OUT("{\"a\":{\"c\":null,\"d\":[1,\"x\",2.5]},\"b\":1}");
	run(RENDER_RAW, NULL, NULL, false, "[]");
	CHECK_OUT("[]");
	run(RENDER_RAW, NULL, NULL, false, "{}");
	CHECK_OUT("{}");
}

/* --- json --- */

TEST(test_json_string_is_escaped)
{
	run(RENDER_JSON, NULL, NULL, false,
	    "\"a\\\"b\\\\c/\\n\\t\\r\\b\\f\\u0001\\u00e9\"");
	CHECK_OUT("\"a\\\"b\\\\c/\\n\\t\\r\\b\\f\\u0001\xc3\xa9\"");
}

TEST(test_json_object_has_sorted_keys_at_every_level)
{
	run(RENDER_JSON, NULL, NULL, false,
	    "{\"zeta\":{\"y\":true,\"x\":[{\"b\":1,\"a\":2}]},\"ab\":1,\"a\":\"v\"}");
	CHECK_OUT(
	    "{\"a\":\"v\",\"ab\":1,\"zeta\":{\"x\":[{\"a\":2,\"b\":1}],\"y\":true}}");
}

TEST(test_json_number_and_field)
{
	run(RENDER_JSON, NULL, NULL, false, "5432");
	CHECK_OUT("5432");
	run(RENDER_JSON, "db.port", NULL, false,
	    "{\"db\":{\"port\":5432,\"host\":\"h\"}}");
	CHECK_OUT("5432");
	run(RENDER_JSON, "db", NULL, false, "{\"db\":{\"port\":5432,\"host\":\"h\"}}");
	CHECK_OUT("{\"host\":\"h\",\"port\":5432}");
}

/* --- fields --- */

TEST(test_field_selects_a_key)
{
	run(RENDER_RAW, "password", NULL, false,
	    "{\"username\":\"app\",\"password\":\"" SECRET "\"}");
	CHECK_OUT(SECRET);
}

TEST(test_field_dotted_path_descends)
{
	run(RENDER_RAW, "a.b.c", NULL, false, "{\"a\":{\"b\":{\"c\":\"deep\"}}}");
	CHECK_OUT("deep");
	run(RENDER_RAW, "a.b", NULL, false, "{\"a\":{\"b\":{\"c\":7}}}");
	CHECK_OUT("{\"c\":7}");
}

TEST(test_field_key_containing_a_dot_matches_whole_first)
{
	run(RENDER_RAW, "a.b", NULL, false,
	    "{\"a\":{\"b\":\"nested\"},\"a.b\":\"whole\"}");
	CHECK_OUT("whole");
	run(RENDER_RAW, "tls.crt.pem", NULL, false, "{\"tls.crt\":{\"pem\":\"PEM\"}}");
	CHECK_OUT("PEM");
	run(RENDER_RAW, "x.tls.crt", NULL, false, "{\"x\":{\"tls.crt\":\"C\"}}");
	CHECK_OUT("C");
}

TEST(test_field_backtracks_when_a_dotted_key_leads_nowhere)
{
	run(RENDER_RAW, "a.b.c", NULL, false,
	    "{\"a.b\":{\"x\":1},\"a\":{\"b\":{\"c\":\"ok\"}}}");
	CHECK_OUT("ok");
}

TEST(test_missing_field_names_the_field)
{
	run(RENDER_RAW, "a.x", NULL, false, "{\"a\":{\"b\":\"" SECRET "\"}}");
	CHECK_FAILS(SFS_ENOTFOUND, "field \"a.x\" not found");
	CHECK_STR_EQ(err_, "field \"a.x\" not found");
}

TEST(test_field_through_a_non_object_is_not_found)
{
	run(RENDER_RAW, "a.b", NULL, false, "{\"a\":\"" SECRET "\"}");
	CHECK_FAILS(SFS_ENOTFOUND, "field \"a.b\" not found");
	run(RENDER_RAW, "a", NULL, false, "\"" SECRET "\"");
	CHECK_FAILS(SFS_ENOTFOUND, "field \"a\" not found");
}

TEST(test_render_select_contract)
{
	json_t *v = parse("{\"a\":{\"b\":[1]},\"s\":\"x\"}");

	CHECK(render_select(v, NULL) == v);
	CHECK(render_select(v, "a.b") == json_object_get(json_object_get(v, "a"), "b"));
	CHECK(render_select(v, "a.b.0") == NULL);
	CHECK(render_select(v, "s.x") == NULL);
	CHECK(render_select(v, "") == NULL);
	CHECK(render_select(json_object_get(v, "s"), "s") == NULL);
	json_decref(v);
}

TEST(test_render_select_is_bounded_on_pathological_paths)
{
	/* Level i has "a" -> level i+1 and "a.a" -> level i+2: exponentially
	 * many ways to split the path, none of which ends in "zz". */
	enum { LEVELS = 60 };
	json_t *lv[LEVELS + 2];
	char path[LEVELS * 2 + 8];
	size_t n = 0;

	setup();
	for (int i = 0; i < LEVELS + 2; i++)
		lv[i] = json_object();
	for (int i = 0; i < LEVELS; i++) {
		json_object_set(lv[i], "a", lv[i + 1]);
		json_object_set(lv[i], "a.a", lv[i + 2]);
	}
	for (int i = 0; i < LEVELS; i++) {
		path[n++] = 'a';
		path[n++] = '.';
	}
	memcpy(path + n, "zz", 3);
	CHECK(render_select(lv[0], path) == NULL);
	for (int i = 0; i < LEVELS + 2; i++)
		json_decref(lv[i]);
}

/* --- base64 --- */

TEST(test_base64_standard)
{
	run(RENDER_RAW, NULL, NULL, true, "\"c2VjcmV0IQ==\"");
	CHECK_OUT("secret!");
	run(RENDER_RAW, "v", NULL, true, "{\"v\":\"+/+/\"}");
	CHECK_OUT("\xfb\xff\xbf");
}

TEST(test_base64_url_safe)
{
	run(RENDER_RAW, NULL, NULL, true, "\"-_-_\"");
	CHECK_OUT("\xfb\xff\xbf");
	run(RENDER_RAW, NULL, NULL, true, "\"-_8=\"");
	CHECK_OUT("\xfb\xff");
}

TEST(test_base64_without_padding)
{
	run(RENDER_RAW, NULL, NULL, true, "\"c2VjcmV0IQ\"");
	CHECK_OUT("secret!");
	run(RENDER_RAW, NULL, NULL, true, "\"-_8\"");
	CHECK_OUT("\xfb\xff");
}

TEST(test_base64_ignores_whitespace)
{
	run(RENDER_RAW, NULL, NULL, true, "\"c2Vj\\ncmV0\\r\\n IQ==\\t\\n\"");
	CHECK_OUT("secret!");
}

TEST(test_base64_binary_and_empty)
{
	run(RENDER_RAW, NULL, NULL, true, "\"AAEC\"");
	CHECK_EQ_INT(rc_, 0);
	CHECK_EQ_INT(out_len_, 3);
	CHECK(memcmp(out_, "\x00\x01\x02", 3) == 0);
	run(RENDER_RAW, NULL, NULL, true, "\"\"");
	CHECK_OUT("");
}

TEST(test_base64_invalid_is_einval)
{
	run(RENDER_RAW, "k", NULL, true, "{\"k\":\"" SECRET "!!\"}");
	CHECK_FAILS(SFS_EINVAL, "field \"k\" is not valid base64");
	run(RENDER_RAW, NULL, NULL, true, "\"c2VjcmV0IQ=\"");
	CHECK_FAILS(SFS_EINVAL, "not valid base64");
	run(RENDER_RAW, NULL, NULL, true, "\"+/-_\"");
	CHECK_FAILS(SFS_EINVAL, "not valid base64");
}

TEST(test_base64_of_a_non_string_is_einval)
{
	run(RENDER_RAW, NULL, NULL, true, "{\"k\":\"" SECRET "\"}");
	CHECK_FAILS(SFS_EINVAL, "is not a string");
	run(RENDER_RAW, "n", NULL, true, "{\"n\":12}");
	CHECK_FAILS(SFS_EINVAL, "field \"n\" is not a string");
}

TEST(test_base64_decoded_json_feeds_other_formats)
{
	/* {"b":1,"a":"x'y"} */
	run(RENDER_JSON, NULL, NULL, true, "\"eyJiIjoxLCJhIjoieCd5In0=\"");
	CHECK_OUT("{\"a\":\"x'y\",\"b\":1}");
	run(RENDER_ENV, NULL, NULL, true, "\"eyJiIjoxLCJhIjoieCd5In0=\"");
	CHECK_OUT("a='x'\\''y'\nb='1'\n");
	run(RENDER_TEMPLATE, NULL, "[{{ a }}]", true, "\"eyJiIjoxLCJhIjoieCd5In0=\"");
	CHECK_OUT("[x'y]");
}

TEST(test_base64_decoded_non_json_is_einval_for_structured_formats)
{
	/* base64 of SECRET */
	run(RENDER_JSON, NULL, NULL, true, "\"U3VwM3JTM2NyZXRWYWx1ZQ==\"");
	CHECK_FAILS(SFS_EINVAL, "not a JSON document");
}

/* --- env --- */

TEST(test_env_lines_are_sorted_by_key_bytes)
{
	run(RENDER_ENV, NULL, NULL, false,
	    "{\"b\":\"4\",\"_a\":\"3\",\"B\":\"2\",\"A\":\"1\",\"AB\":\"5\"}");
	CHECK_OUT("A='1'\nAB='5'\nB='2'\n_a='3'\nb='4'\n");
}

TEST(test_env_quotes_quotes_newlines_and_spaces)
{
	run(RENDER_ENV, NULL, NULL, false,
	    "{\"PASS\":\"it's a \\\"test\\\"\\nline two  $HOME `x` \\\\ ''\"}");
	CHECK_OUT("PASS='it'\\''s a \"test\"\nline two  $HOME `x` \\ '\\'''\\'''\n");
	run(RENDER_ENV, NULL, NULL, false, "{\"E\":\"\"}");
	CHECK_OUT("E=''\n");
}

TEST(test_env_non_string_values_are_json_text)
{
	run(RENDER_ENV, NULL, NULL, false,
	    "{\"N\":5,\"O\":{\"y\":\"a'b\",\"x\":1},\"T\":true,\"Z\":null,\"L\":[1,2]}");
	CHECK_OUT(
	    "L='[1,2]'\nN='5'\nO='{\"x\":1,\"y\":\"a'\\''b\"}'\nT='true'\nZ='null'\n");
}

TEST(test_env_with_field_and_empty_object)
{
	run(RENDER_ENV, "data", NULL, false, "{\"data\":{\"USER\":\"app\"},\"other\":1}");
	CHECK_OUT("USER='app'\n");
	run(RENDER_ENV, NULL, NULL, false, "{}");
	CHECK_OUT("");
}

TEST(test_env_bad_key_is_named_without_its_value)
{
	run(RENDER_ENV, NULL, NULL, false, "{\"GOOD\":\"1\",\"bad-key\":\"" SECRET "\"}");
	CHECK_FAILS(SFS_EINVAL, "env key \"bad-key\"");
	run(RENDER_ENV, NULL, NULL, false, "{\"1ABC\":\"" SECRET "\"}");
	CHECK_FAILS(SFS_EINVAL, "env key \"1ABC\"");
	run(RENDER_ENV, NULL, NULL, false, "{\"\":\"" SECRET "\"}");
	CHECK_FAILS(SFS_EINVAL, "env key \"\"");
	run(RENDER_ENV, NULL, NULL, false, "{\"A B\":\"" SECRET "\"}");
	CHECK_FAILS(SFS_EINVAL, "env key \"A B\"");
}

TEST(test_env_key_with_control_bytes_is_sanitised_in_error)
{
	run(RENDER_ENV, NULL, NULL, false, "{\"A\\nB\\\"\":\"" SECRET "\"}");
	CHECK_FAILS(SFS_EINVAL, "env key \"A?B?\"");
}

TEST(test_env_value_with_nul_is_einval)
{
	run(RENDER_ENV, NULL, NULL, false, "{\"K\":\"" SECRET "\\u0000x\"}");
	CHECK_FAILS(SFS_EINVAL, "key \"K\" contains a NUL byte");
}

TEST(test_env_needs_an_object)
{
	run(RENDER_ENV, NULL, NULL, false, "\"" SECRET "\"");
	CHECK_FAILS(SFS_EINVAL, "format env needs an object");
	run(RENDER_ENV, NULL, NULL, false, "[1]");
	CHECK_FAILS(SFS_EINVAL, "format env needs an object");
}

/* --- template --- */

TEST(test_template_substitutes_keys)
{
	run(RENDER_TEMPLATE, NULL,
	    "url=postgres://{{username}}@db/app\nkey={{api_key}}\n", false,
	    "{\"username\":\"app\",\"api_key\":\"" SECRET "\"}");
	CHECK_OUT("url=postgres://app@db/app\nkey=" SECRET "\n");
}

TEST(test_template_allows_spaces_in_tags)
{
	run(RENDER_TEMPLATE, NULL, "<{{ a }}|{{a}}|{{   a\t}}>", false, "{\"a\":\"v\"}");
	CHECK_OUT("<v|v|v>");
}

TEST(test_template_nested_paths)
{
	run(RENDER_TEMPLATE, NULL, "{{ db.host }}:{{db.port}} {{ tls.crt }}", false,
	    "{\"db\":{\"host\":\"h\",\"port\":5432},\"tls.crt\":\"C\"}");
	CHECK_OUT("h:5432 C");
}

TEST(test_template_is_relative_to_the_field)
{
	run(RENDER_TEMPLATE, "data", "u={{ user }}", false,
	    "{\"data\":{\"user\":\"app\"},\"user\":\"outer\"}");
	CHECK_OUT("u=app");
}

TEST(test_template_non_strings_render_as_json_text)
{
	run(RENDER_TEMPLATE, NULL, "{{n}} {{b}} {{o}} {{z}}", false,
	    "{\"n\":1.5,\"b\":false,\"o\":{\"k\":\"v\",\"a\":[]},\"z\":null}");
	CHECK_OUT("1.5 false {\"a\":[],\"k\":\"v\"} null");
}

TEST(test_template_missing_key_is_named)
{
	run(RENDER_TEMPLATE, NULL, "a={{ a }} b={{ nope.x }}", false,
	    "{\"a\":\"" SECRET "\"}");
	CHECK_FAILS(SFS_ENOTFOUND, "template key \"nope.x\" not found");
	CHECK_STR_EQ(err_, "template key \"nope.x\" not found");
}

TEST(test_template_unterminated_tag_is_einval)
{
	run(RENDER_TEMPLATE, NULL, "a={{ a }} b={{ b", false, "{\"a\":\"" SECRET "\"}");
	CHECK_FAILS(SFS_EINVAL, "unterminated");
	run(RENDER_TEMPLATE, NULL, "{{", false, "{\"a\":\"" SECRET "\"}");
	CHECK_FAILS(SFS_EINVAL, "unterminated");
}

TEST(test_template_quadruple_brace_is_literal)
{
	run(RENDER_TEMPLATE, NULL, "{{{{ a }} {{a}} x{{{{", false, "{\"a\":\"v\"}");
	CHECK_OUT("{{ a }} v x{{");
	run(RENDER_TEMPLATE, NULL, "{ } }} {x}", false, "{\"a\":\"v\"}");
	CHECK_OUT("{ } }} {x}");
}

TEST(test_template_plain_and_empty_text)
{
	run(RENDER_TEMPLATE, NULL, "no tags here\n", false, "{}");
	CHECK_OUT("no tags here\n");
	run(RENDER_TEMPLATE, NULL, "", false, "{}");
	CHECK_OUT("");
}

TEST(test_template_empty_tag_and_missing_text_are_einval)
{
	run(RENDER_TEMPLATE, NULL, "x{{  }}", false, "{\"a\":\"" SECRET "\"}");
	CHECK_FAILS(SFS_EINVAL, "empty");
	run(RENDER_TEMPLATE, NULL, NULL, false, "{\"a\":\"" SECRET "\"}");
	CHECK_FAILS(SFS_EINVAL, "needs a template");
}

TEST(test_template_on_a_string_value_finds_no_keys)
{
	run(RENDER_TEMPLATE, NULL, "{{a}}", false, "\"" SECRET "\"");
	CHECK_FAILS(SFS_ENOTFOUND, "template key \"a\" not found");
}

/* --- template syntax check (render_template_check) --- */

static char check_err_[256];

/* render_template_check(tpl); also asserts render() refuses it the same way. */
static int check_tpl(const char *tpl)
{
	struct diag d;
	int rc;

	diag_init(&d, NULL);
	rc = render_template_check(tpl, NULL, &d);
	CHECK_EQ_INT(d.count, rc == 0 ? 0 : 1);
	snprintf(check_err_, sizeof check_err_, "%s", d.count ? d.msgs[0] : "");
	diag_release(&d);
	run(RENDER_TEMPLATE, NULL, tpl, false, "{\"a\":{\"b\":\"" SECRET "\"}}");
	if (rc == 0) {
		CHECK_EQ_INT(check_err_[0], '\0');
	} else {
		CHECK_EQ_INT(rc_, rc);
		CHECK_STR_EQ(err_, check_err_);
	}
	return rc;
}

TEST(test_template_check_accepts_key_paths)
{
	CHECK_EQ_INT(check_tpl("u={{a.b}}\n{{ a.b }} {{{{ literal }} {{\ta.b\t}}"), 0);
	CHECK_EQ_INT(check_tpl("no tags, } and { alone"), 0);
	CHECK_EQ_INT(check_tpl(""), 0);
}

TEST(test_template_check_names_a_consul_template_action_with_its_position)
{
	CHECK_EQ_INT(
	    check_tpl("{{ with secret \"secret/data/app\" }}{{ .Data.data.username "
	              "}}{{ end }}"),
	    SFS_EINVAL);
	CHECK_STR_EQ(
	    check_err_,
	    "line 1, column 4: \"with\" is a consul-template/Go template action; "
	    "the template format substitutes {{key}} and {{a.b}} only");
	CHECK(strstr(check_err_, "secret/data/app") == NULL);
}

/* Templates render_template_check refuses, and where and why. */
static const struct {
	const char *tpl, *why;
} refused_templates[] = {
    {"a={{a.b}}\nuser={{ .Data.data.username }}\n",
     "line 2, column 9: a key path starting with \".\" (.Data.x) is Go template syntax; "
     "the template format substitutes {{key}} and {{a.b}} only"},
    {"x\n  {{ a.b | toUpper }}", "line 2, column 10: a pipe \"|\" is Go template syntax"},
    {"{{$x}}", "line 1, column 3: a variable \"$\" is Go template syntax"},
    {"{{ index \"k\" }}",
     "line 1, column 4: \"index\" is a consul-template/Go template action"},
    {"{{ printf(a) }}", "line 1, column 10: quotes and parentheses are Go template"},
    {"{{- a.b }}", "line 1, column 3: \"-\" next to the braces (a trim marker)"},
    {"{{ a.b -}}", "line 1, column 8: \"-\" next to the braces (a trim marker)"},
    {"{{ a b }}", "line 1, column 5: not a key path: it has a space"},
    {"{{a..b}}", "line 1, column 4: not a key path: it has an empty segment"},
    {"{{a.}}", "line 1, column 4: not a key path: it has an empty segment"},
    {"{{{a}}}", "line 1, column 3: not a key path: it has a brace"},
    {"ok\n\n   {{ a", "line 3, column 4: unterminated \"{{\" in template"},
    {"{{ }}", "line 1, column 1: empty \"{{ }}\" in template"},
};

TEST(test_template_check_refuses_each_with_its_position_and_reason)
{
	for (size_t i = 0; i < sizeof refused_templates / sizeof refused_templates[0];
	     i++) {
		CHECK_EQ_INT(check_tpl(refused_templates[i].tpl), SFS_EINVAL);
		CHECK_STR_CONTAINS(check_err_, refused_templates[i].why);
	}
}

TEST(test_template_check_never_quotes_the_text)
{
	CHECK_EQ_INT(check_tpl("pw=" SECRET "{{ " SECRET " x }}"), SFS_EINVAL);
	CHECK(strstr(check_err_, SECRET) == NULL);
}

/* --- size cap --- */

static char *big_string_json(size_t n)
{
	char *s = malloc(n + 3);

	s[0] = '"';
	memset(s + 1, 'S', n);
	s[n + 1] = '"';
	s[n + 2] = '\0';
	return s;
}

TEST(test_output_may_reach_render_max_len_exactly)
{
	char *text = big_string_json(RENDER_MAX_LEN);
	struct render_spec spec = {RENDER_RAW, NULL, NULL, false};
	json_t *v = parse(text);
	struct secbuf out;
	struct backend_error err;

	secbuf_init(&out, RENDER_MAX_LEN);
	CHECK_EQ_INT(render(&spec, v, &out, &err), 0);
	CHECK_EQ_INT(out.len, RENDER_MAX_LEN);
	secbuf_release(&out);
	json_decref(v);
	free(text);
}

TEST(test_raw_output_past_render_max_len_is_etoobig)
{
	char *text = big_string_json(RENDER_MAX_LEN + 1);
	struct render_spec spec = {RENDER_RAW, NULL, NULL, false};
	json_t *v = parse(text);
	struct secbuf out;
	struct backend_error err;

	/* The caller's cap is larger: RENDER_MAX_LEN still applies. */
	secbuf_init(&out, 4 * RENDER_MAX_LEN);
	CHECK_EQ_INT(render(&spec, v, &out, &err), SFS_ETOOBIG);
	CHECK(out.data == NULL && out.len == 0);
	CHECK_STR_CONTAINS(err.msg, "size limit");
	secbuf_release(&out);
	json_decref(v);
	free(text);
}

TEST(test_template_expanding_past_render_max_len_is_etoobig)
{
	struct render_spec spec = {RENDER_TEMPLATE, NULL, "{{v}}{{v}}{{ v }}", false};
	json_t *v = json_object();
	char *val = malloc(RENDER_MAX_LEN / 3 + 2);
	struct secbuf out;
	struct backend_error err;

	setup();
	memset(val, 'Q', RENDER_MAX_LEN / 3 + 1);
	val[RENDER_MAX_LEN / 3 + 1] = '\0';
	json_object_set_new(v, "v", json_string(val));
	secbuf_init(&out, RENDER_MAX_LEN);
	CHECK_EQ_INT(render(&spec, v, &out, &err), SFS_ETOOBIG);
	CHECK(out.data == NULL && out.len == 0);
	CHECK_STR_CONTAINS(err.msg, "exceeds the size limit");
	CHECK(strstr(err.msg, "QQQQ") == NULL);
	secbuf_release(&out);
	json_decref(v);
	free(val);
}

TEST(test_callers_smaller_cap_is_etoobig)
{
	struct render_spec spec = {RENDER_RAW, NULL, NULL, false};
	json_t *v = parse("\"" SECRET "\"");
	struct secbuf out;
	struct backend_error err;

	secbuf_init(&out, 4);
	CHECK_EQ_INT(render(&spec, v, &out, &err), SFS_ETOOBIG);
	CHECK(out.data == NULL && out.len == 0);
	CHECK_STR_CONTAINS(err.msg, "(4 bytes)");
	CHECK(strstr(err.msg, SECRET) == NULL);
	secbuf_release(&out);
	json_decref(v);
}

/* --- robustness --- */

TEST(test_deeply_nested_value_is_refused)
{
	struct render_spec spec = {RENDER_JSON, NULL, NULL, false};
	json_t *root = NULL, *v;
	struct secbuf out;
	struct backend_error err;

	setup();
	v = json_string(SECRET);
	for (int i = 0; i < 1000; i++) {
		root = json_array();
		json_array_append_new(root, v);
		v = root;
	}
	secbuf_init(&out, RENDER_MAX_LEN);
	CHECK_EQ_INT(render(&spec, root, &out, &err), SFS_EINVAL);
	CHECK_STR_CONTAINS(err.msg, "nested too deeply");
	secbuf_release(&out);
	json_decref(root);
}

TEST(test_render_without_err_buffer)
{
	struct render_spec spec = {RENDER_RAW, "missing", NULL, false};
	json_t *v = parse("{}");
	struct secbuf out;

	secbuf_init(&out, RENDER_MAX_LEN);
	CHECK_EQ_INT(render(&spec, v, &out, NULL), SFS_ENOTFOUND);
	secbuf_release(&out);
	json_decref(v);
}

TEST(test_render_rejects_null_arguments)
{
	struct render_spec spec = {RENDER_RAW, NULL, NULL, false};
	json_t *v = parse("\"x\"");
	struct secbuf out;
	struct backend_error err;

	secbuf_init(&out, RENDER_MAX_LEN);
	CHECK_EQ_INT(render(NULL, v, &out, &err), SFS_EINVAL);
	CHECK_EQ_INT(render(&spec, NULL, &out, &err), SFS_EINVAL);
	CHECK_EQ_INT(render(&spec, v, NULL, &err), SFS_EINVAL);
	CHECK_EQ_INT(out.len, 0);
	json_decref(v);
}

TEST(test_long_names_are_truncated_in_errors)
{
	char field[400];

	memset(field, 'f', sizeof(field) - 1);
	field[sizeof(field) - 1] = '\0';
	run(RENDER_RAW, field, NULL, false, "{}");
	CHECK_EQ_INT(rc_, SFS_ENOTFOUND);
	CHECK_STR_CONTAINS(err_, "...\" not found");
}

TEST(test_render_leaves_no_arena_memory_in_use)
{
	size_t before;

	setup();
	before = secmem_arena_bytes_in_use();
	run(RENDER_ENV, NULL, NULL, false, "{\"A\":{\"x\":1},\"B\":\"2\"}");
	run(RENDER_JSON, NULL, NULL, true, "\"eyJiIjoxLCJhIjoieCd5In0=\"");
	run(RENDER_TEMPLATE, NULL, "{{a}}", false, "{\"a\":\"v\"}");
	run(RENDER_RAW, "zz", NULL, false, "{\"a\":\"v\"}");
	CHECK_EQ_INT(secmem_arena_bytes_in_use(), before);
}

TEST(test_format_table_says_which_keys_a_format_needs_or_refuses)
{
	char buf[128];
	enum render_format f;

	CHECK_STR_EQ(render_format_names(buf, sizeof buf),
	             "raw, json, env, template, consul-template");
	CHECK_EQ_INT(render_format_parse("template", &f), 0);
	CHECK_STR_EQ(render_format_name(f), "template");
	CHECK_EQ_INT(render_format_parse("yaml", &f), SFS_EINVAL);
	CHECK_EQ_INT(render_format_takes(RENDER_TEMPLATE, "template"), 1);
	CHECK_EQ_INT(render_format_takes(RENDER_RAW, "template"), -1);
	CHECK_EQ_INT(render_format_takes(RENDER_RAW, "decode"), 0);
	CHECK_EQ_INT(render_format_takes(RENDER_ENV, "decode"), -1);
	/* Keys that do not depend on the format. */
	CHECK_EQ_INT(render_format_takes(RENDER_ENV, "field"), 0);
	CHECK_STR_EQ(render_formats_taking("template", buf, sizeof buf),
	             "\"template\" or \"consul-template\"");
	CHECK_EQ_INT(render_format_takes(RENDER_CONSUL_TEMPLATE, "template"), 0);
	CHECK_EQ_INT(render_format_takes(RENDER_CONSUL_TEMPLATE, "decode"), -1);
	CHECK_STR_EQ(render_formats_taking("decode", buf, sizeof buf), "\"raw\"");
	CHECK_STR_EQ(render_formats_taking("field", buf, sizeof buf),
	             "\"raw\", \"json\", \"env\", \"template\" or \"consul-template\"");
}

TEST_MAIN(
    test_format_table_says_which_keys_a_format_needs_or_refuses,
    test_raw_string_is_its_bytes, test_raw_string_keeps_nul_bytes,
    test_raw_numbers_booleans_null_as_json_text,
    test_raw_object_is_compact_json_with_sorted_keys, test_json_string_is_escaped,
    test_json_object_has_sorted_keys_at_every_level, test_json_number_and_field,
    test_field_selects_a_key, test_field_dotted_path_descends,
    test_field_key_containing_a_dot_matches_whole_first,
    test_field_backtracks_when_a_dotted_key_leads_nowhere,
    test_missing_field_names_the_field, test_field_through_a_non_object_is_not_found,
    test_render_select_contract, test_render_select_is_bounded_on_pathological_paths,
    test_base64_standard, test_base64_url_safe, test_base64_without_padding,
    test_base64_ignores_whitespace, test_base64_binary_and_empty,
    test_base64_invalid_is_einval, test_base64_of_a_non_string_is_einval,
    test_base64_decoded_json_feeds_other_formats,
    test_base64_decoded_non_json_is_einval_for_structured_formats,
    test_env_lines_are_sorted_by_key_bytes, test_env_quotes_quotes_newlines_and_spaces,
    test_env_non_string_values_are_json_text, test_env_with_field_and_empty_object,
    test_env_bad_key_is_named_without_its_value,
    test_env_key_with_control_bytes_is_sanitised_in_error,
    test_env_value_with_nul_is_einval, test_env_needs_an_object,
    test_template_substitutes_keys, test_template_allows_spaces_in_tags,
    test_template_nested_paths, test_template_is_relative_to_the_field,
    test_template_non_strings_render_as_json_text, test_template_missing_key_is_named,
    test_template_unterminated_tag_is_einval, test_template_quadruple_brace_is_literal,
    test_template_plain_and_empty_text,
    test_template_empty_tag_and_missing_text_are_einval,
    test_template_on_a_string_value_finds_no_keys, test_template_check_accepts_key_paths,
    test_template_check_names_a_consul_template_action_with_its_position,
    test_template_check_refuses_each_with_its_position_and_reason,
    test_template_check_never_quotes_the_text,
    test_output_may_reach_render_max_len_exactly,
    test_raw_output_past_render_max_len_is_etoobig,
    test_template_expanding_past_render_max_len_is_etoobig,
    test_callers_smaller_cap_is_etoobig, test_deeply_nested_value_is_refused,
    test_render_without_err_buffer, test_render_rejects_null_arguments,
    test_long_names_are_truncated_in_errors, test_render_leaves_no_arena_memory_in_use)
