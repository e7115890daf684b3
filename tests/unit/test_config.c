/*
 * Unit tests of the config loader (config.c) and diagnostics (diag.c): a
 * full config round-trips every field, defaults apply, and each kind of bad
 * config yields exactly the expected messages, all of them in one pass.
 *
 * Configs are written with ' for " to keep the C literals readable.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "secretfs/backend.h"
#include "secretfs/config.h"
#include "secretfs/error.h"
#include "secretfs/log.h"
#include "test.h"

#define MAX_WANT 4

/* Copies text with every ' turned into ". Caller frees. */
static char *dq(const char *text)
{
	char *s = strdup(text);

	for (char *c = s; c && *c; c++)
		if (*c == '\'')
			*c = '"';
	return s;
}

/* Parses text (with ' for ") as "cfg.json"; messages go to d. */
static int parse(const char *text, struct diag *d, struct config **out)
{
	char *json = dq(text);
	int rc;

	diag_init(d, NULL);
	rc = config_parse(json, "cfg.json", d, out);
	free(json);
	return rc;
}

static void dump(const char *label, const struct diag *d)
{
	fprintf(stderr, "  [%s] %zu message(s):\n", label, d->count);
	for (size_t i = 0; i < d->count; i++)
		fprintf(stderr, "    %s\n", d->msgs[i]);
}

static bool any_contains(const struct diag *d, const char *sub)
{
	for (size_t i = 0; i < d->count; i++)
		if (strstr(d->msgs[i], sub))
			return true;
	return false;
}

/* --- valid configs ------------------------------------------------------ */

static const char full_config[] =
    "{'mount': {'path': '/run/secrets/app', 'type': 'directory', 'uid': 10,"
    "           'gid': 20, 'mode': '0440', 'dir_mode': '550', 'keep_on_exit': true},"
    " 'backends': {"
    "   'local': {'type': 'file', 'path': 'x.json'},"
    "   'fake': {'type': 'dev', 'ttl': '30s'}},"
    " 'secrets': {"
    "   'db/password': {'backend': 'fake', 'path': 'database/creds/app',"
    "                   'field': 'password', 'format': 'raw', 'decode': 'base64',"
    "                   'refresh': '1h30m', 'mode': '0440', 'uid': 1000, 'gid': 2000,"
    "                   'on_change': {'signal': 'SIGHUP', 'pid_file': '/run/app.pid'}},"
    "   'db.env': {'backend': 'fake', 'path': 'database/creds/app', 'format': 'env',"
    "              'on_change': {'command': ['/bin/kill', '-USR1', '1'],"
    "                            'debounce': 2.5}},"
    "   'app.conf': {'backend': 'local', 'path': 'app', 'format': 'template',"
    "                'template': 'k={{a.b}}\\n', 'mode': 256},"
    "   'x/y/z.json': {'backend': 'local', 'path': 'nested', 'format': 'json',"
    "                  'field': 'a.b', 'refresh': 90}},"
    " 'log': {'level': 'debug', 'format': 'json'},"
    " 'startup_timeout': '2m', 'shutdown_timeout': '2.5s'}";

TEST(test_full_config_round_trips_every_field)
{
	struct config *cfg = NULL;
	struct diag d;
	const struct config_secret *s;

	CHECK_EQ_INT(parse(full_config, &d, &cfg), 0);
	CHECK_EQ_INT(d.count, 0);
	if (!cfg) {
		dump("full", &d);
		diag_release(&d);
		return;
	}
	CHECK_STR_EQ(cfg->file, "cfg.json");
	CHECK_STR_EQ(cfg->mount.path, "/run/secrets/app");
	CHECK_EQ_INT(cfg->mount.type, MOUNT_DIRECTORY);
	CHECK_EQ_INT(cfg->mount.uid, 10);
	CHECK_EQ_INT(cfg->mount.gid, 20);
	CHECK_EQ_INT(cfg->mount.mode, 0440);
	CHECK_EQ_INT(cfg->mount.dir_mode, 0550);
	CHECK(cfg->mount.keep_on_exit);
	CHECK(!cfg->mount.allow_other);

	CHECK_EQ_INT(cfg->nbackends, 2);
	CHECK_STR_EQ(cfg->backends[0].name, "local");
	CHECK_STR_EQ(cfg->backends[0].type, "file");
	CHECK_STR_EQ(json_string_value(json_object_get(cfg->backends[0].json, "path")),
	             "x.json");
	CHECK_STR_EQ(cfg->backends[1].name, "fake");
	CHECK_STR_EQ(cfg->backends[1].type, "dev");
	CHECK(config_backend_find(cfg, "fake") == &cfg->backends[1]);
	CHECK(config_backend_find(cfg, "nope") == NULL);

	CHECK_EQ_INT(cfg->nsecrets, 4);
	s = &cfg->secrets[0];
	CHECK_STR_EQ(s->name, "db/password");
	CHECK_STR_EQ(s->backend, "fake");
	CHECK_STR_EQ(s->path, "database/creds/app");
	CHECK_STR_EQ(s->field, "password");
	/* One block, the name first (pack_strings). */
	CHECK(s->packed);
	CHECK(s->backend == s->name + strlen(s->name) + 1);
	CHECK(s->path == s->backend + strlen(s->backend) + 1);
	CHECK(s->field == s->path + strlen(s->path) + 1);
	CHECK_EQ_INT(s->format, RENDER_RAW);
	CHECK(s->decode_base64);
	CHECK_EQ_INT(s->refresh_ms, 90 * 60 * 1000);
	CHECK(s->has_mode && s->has_uid && s->has_gid);
	CHECK_EQ_INT(s->mode, 0440);
	CHECK_EQ_INT(s->uid, 1000);
	CHECK_EQ_INT(s->gid, 2000);
	CHECK(s->on_change != NULL);
	if (s->on_change) {
		CHECK_EQ_INT(s->on_change->signal, SIGHUP);
		CHECK_STR_EQ(s->on_change->pid_file, "/run/app.pid");
		CHECK(s->on_change->argv == NULL);
		CHECK_EQ_INT(s->on_change->debounce_ms, 1000);
	}
	CHECK(json_is_object(s->extra) && json_object_size(s->extra) == 0);

	s = &cfg->secrets[1];
	CHECK_STR_EQ(s->name, "db.env");
	CHECK_EQ_INT(s->format, RENDER_ENV);
	CHECK(s->field == NULL);
	CHECK(s->packed && s->path == s->backend + strlen(s->backend) + 1);
	CHECK(!s->has_mode && !s->has_uid && !s->has_gid);
	CHECK_EQ_INT(s->refresh_ms, 0);
	CHECK(s->on_change && s->on_change->argv);
	if (s->on_change && s->on_change->argv) {
		CHECK_EQ_INT(s->on_change->signal, 0);
		CHECK(s->on_change->pid_file == NULL);
		CHECK_STR_EQ(s->on_change->argv[0], "/bin/kill");
		CHECK_STR_EQ(s->on_change->argv[1], "-USR1");
		CHECK_STR_EQ(s->on_change->argv[2], "1");
		CHECK(s->on_change->argv[3] == NULL);
		CHECK_EQ_INT(s->on_change->debounce_ms, 2500);
	}

	s = &cfg->secrets[2];
	CHECK_STR_EQ(s->name, "app.conf");
	CHECK_EQ_INT(s->format, RENDER_TEMPLATE);
	CHECK_STR_EQ(s->template_text, "k={{a.b}}\n");
	CHECK(s->has_mode);
	CHECK_EQ_INT(s->mode, 0400);

	s = &cfg->secrets[3];
	CHECK_STR_EQ(s->name, "x/y/z.json");
	CHECK_EQ_INT(s->format, RENDER_JSON);
	CHECK_STR_EQ(s->field, "a.b");
	CHECK_EQ_INT(s->refresh_ms, 90000);
	CHECK(s->on_change == NULL);

	CHECK_EQ_INT(cfg->log.level, LOG_LVL_DEBUG);
	CHECK(cfg->log.json);
	CHECK_EQ_INT(cfg->startup_timeout_ms, 120000);
	CHECK_EQ_INT(cfg->shutdown_timeout_ms, 2500);
	config_free(cfg);
	diag_release(&d);
}

TEST(test_minimal_config_gets_defaults)
{
	struct config *cfg = NULL;
	struct diag d;

	CHECK_EQ_INT(parse("{'mount': {'path': '/m'},"
	                   " 'backends': {'l': {'type': 'file', 'path': 'x.json'}},"
	                   " 'secrets': {'a': {'backend': 'l', 'path': 'a'}}}",
	                   &d, &cfg),
	             0);
	CHECK(cfg != NULL);
	if (cfg) {
		CHECK_EQ_INT(cfg->mount.type, MOUNT_FUSE);
		CHECK_EQ_INT(cfg->mount.uid, geteuid());
		CHECK_EQ_INT(cfg->mount.gid, getegid());
		CHECK_EQ_INT(cfg->mount.mode, 0400);
		CHECK_EQ_INT(cfg->mount.dir_mode, 0555);
		CHECK(!cfg->mount.allow_other);
		CHECK(!cfg->mount.keep_on_exit);
		CHECK(!cfg->mount.fast_open);
		CHECK_EQ_INT(cfg->log.level, LOG_LVL_INFO);
		CHECK(!cfg->log.json);
		CHECK_EQ_INT(cfg->startup_timeout_ms, 30000);
		CHECK_EQ_INT(cfg->shutdown_timeout_ms, 5000);
		CHECK_EQ_INT(cfg->secrets[0].format, RENDER_RAW);
		CHECK(cfg->secrets[0].extra != NULL);
		CHECK(cfg->secrets[0].on_change == NULL);
		CHECK(cfg->secrets[0].field == NULL);
		CHECK(cfg->secrets[0].template_text == NULL);
		CHECK(!cfg->secrets[0].decode_base64);
	}
	config_free(cfg);
	diag_release(&d);
}

TEST(test_fuse_mount_takes_allow_other_fast_open_and_a_dev_fd_path)
{
	struct config *cfg = NULL;
	struct diag d;

	CHECK_EQ_INT(parse("{'mount': {'path': '/dev/fd/3', 'type': 'fuse',"
	                   "           'allow_other': true, 'fast_open': true},"
	                   " 'backends': {'l': {'type': 'file', 'path': 'x.json'}},"
	                   " 'secrets': {'..a': {'backend': 'l', 'path': 'a'}}}",
	                   &d, &cfg),
	             0);
	CHECK(cfg != NULL);
	if (cfg) {
		CHECK_EQ_INT(cfg->mount.type, MOUNT_FUSE);
		CHECK(cfg->mount.allow_other);
		CHECK(cfg->mount.fast_open);
		CHECK(!cfg->mount.keep_on_exit);
		CHECK_STR_EQ(cfg->secrets[0].name, "..a");
	}
	config_free(cfg);
	diag_release(&d);
}

TEST(test_directory_mount_keep_on_exit_false)
{
	struct config *cfg = NULL;
	struct diag d;

	CHECK_EQ_INT(parse("{'mount': {'path': '/m', 'type': 'directory',"
	                   "           'keep_on_exit': false},"
	                   " 'backends': {'l': {'type': 'file', 'path': 'x.json'}},"
	                   " 'secrets': {'a..': {'backend': 'l', 'path': 'a'}}}",
	                   &d, &cfg),
	             0);
	CHECK(cfg != NULL);
	if (cfg) {
		CHECK_EQ_INT(cfg->mount.type, MOUNT_DIRECTORY);
		CHECK(!cfg->mount.keep_on_exit);
	}
	config_free(cfg);
	diag_release(&d);
}

TEST(test_signal_names_accept_sig_prefix_and_any_case)
{
	static const struct {
		const char *name;
		int number;
	} cases[] = {
	    {"HUP", SIGHUP},   {"SIGHUP", SIGHUP},   {"hup", SIGHUP},
	    {"USR1", SIGUSR1}, {"SIGUSR2", SIGUSR2}, {"TERM", SIGTERM},
	    {"INT", SIGINT},   {"QUIT", SIGQUIT},    {"WINCH", SIGWINCH},
	    {"ALRM", SIGALRM}, {"CONT", SIGCONT},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char text[512];
		struct config *cfg = NULL;
		struct diag d;

		snprintf(text, sizeof text,
		         "{'mount': {'path': '/m'},"
		         " 'backends': {'l': {'type': 'file', 'path': 'x.json'}},"
		         " 'secrets': {'a': {'backend': 'l', 'path': 'a', 'on_change':"
		         " {'signal': '%s', 'pid_file': '/p'}}}}",
		         cases[i].name);
		CHECK_EQ_INT(parse(text, &d, &cfg), 0);
		if (cfg)
			CHECK_EQ_INT(cfg->secrets[0].on_change->signal, cases[i].number);
		else
			dump(cases[i].name, &d);
		config_free(cfg);
		diag_release(&d);
	}
}

TEST(test_modes_accept_octal_strings_and_integers)
{
	static const struct {
		const char *json;
		int mode;
	} cases[] = {
	    {"'0400'", 0400}, {"'440'", 0440}, {"'0'", 0},       {"'00444'", 0444},
	    {"256", 0400},    {"0", 0},        {"'0555'", 0555},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char text[512];
		struct config *cfg = NULL;
		struct diag d;

		snprintf(text, sizeof text,
		         "{'mount': {'path': '/m', 'mode': %s},"
		         " 'backends': {'l': {'type': 'file', 'path': 'x.json'}},"
		         " 'secrets': {'a': {'backend': 'l', 'path': 'a'}}}",
		         cases[i].json);
		CHECK_EQ_INT(parse(text, &d, &cfg), 0);
		if (cfg)
			CHECK_EQ_INT(cfg->mount.mode, cases[i].mode);
		else
			dump(cases[i].json, &d);
		config_free(cfg);
		diag_release(&d);
	}
}

/* --- invalid configs ---------------------------------------------------- */

#define MNT "'mount': {'path': '/m'}"
#define MOUNT(extra) "'mount': {'path': '/m'" extra "}"
#define BK "'backends': {'l': {'type': 'file', 'path': 'x.json'}}"
#define SC "'secrets': {'a': {'backend': 'l', 'path': 'a'}}"
#define SEC(extra) "'secrets': {'a': {'backend': 'l', 'path': 'a'" extra "}}"
#define CFG(...) "{" __VA_ARGS__ "}"
#define ONCHANGE(obj) CFG(MNT ", " BK ", " SEC(", 'on_change': " obj))

struct bad_case {
	const char *label;
	const char *text;
	size_t count; /* messages expected */
	const char *want[MAX_WANT];
};

static const struct bad_case bad_cases[] = {
    /* sections */
    {"empty document",
     "{}",
     3,
     {"cfg.json: missing required key 'mount'", "missing required key 'backends'",
      "missing required key 'secrets'"}},
    {"top level not an object",
     "[1]",
     1,
     {"cfg.json: the top level must be a JSON object"}},
    {"missing mount", CFG(BK ", " SC), 1, {"cfg.json: missing required key 'mount'"}},
    {"missing backends", CFG(MNT ", " SC), 1, {"missing required key 'backends'"}},
    {"missing secrets", CFG(MNT ", " BK), 1, {"missing required key 'secrets'"}},
    {"unknown top-level key",
     CFG(MNT ", " BK ", " SC ", 'colour': 1"),
     1,
     {"cfg.json: colour: unknown key 'colour'"}},
    {"startup_timeout bad",
     CFG(MNT ", " BK ", " SC ", 'startup_timeout': 'forever'"),
     1,
     {"startup_timeout: invalid duration 'forever': expected a number"}},
    {"shutdown_timeout bad",
     CFG(MNT ", " BK ", " SC ", 'shutdown_timeout': '5 seconds'"),
     1,
     {"shutdown_timeout: invalid duration '5 seconds': unknown unit"}},

    /* mount */
    {"mount not an object",
     CFG("'mount': '/m', " BK ", " SC),
     1,
     {"cfg.json: mount: must be an object"}},
    {"mount path missing",
     CFG("'mount': {}, " BK ", " SC),
     1,
     {"cfg.json: mount: missing required key 'path'"}},
    {"mount path empty",
     CFG("'mount': {'path': ''}, " BK ", " SC),
     1,
     {"mount.path: must not be empty"}},
    {"mount path not a string",
     CFG("'mount': {'path': 7}, " BK ", " SC),
     1,
     {"mount.path: must be a string"}},
    {"mount unknown key",
     CFG(MOUNT(", 'colour': 'red'") ", " BK ", " SC),
     1,
     {"mount.colour: unknown key 'colour'"}},
    {"mount type bad",
     CFG(MOUNT(", 'type': 'nfs'") ", " BK ", " SC),
     1,
     {"mount.type: must be 'fuse' or 'directory'"}},
    {"mount uid negative",
     CFG(MOUNT(", 'uid': -1") ", " BK ", " SC),
     1,
     {"mount.uid: must be an integer from 0 to 4294967294"}},
    {"mount uid too large",
     CFG(MOUNT(", 'uid': 4294967295") ", " BK ", " SC),
     1,
     {"mount.uid: must be an integer"}},
    {"mount gid a string",
     CFG(MOUNT(", 'gid': '1000'") ", " BK ", " SC),
     1,
     {"mount.gid: must be an integer"}},
    {"mount uid real",
     CFG(MOUNT(", 'uid': 1.5") ", " BK ", " SC),
     1,
     {"mount.uid: must be an integer"}},
    {"mount mode writable",
     CFG(MOUNT(", 'mode': '0644'") ", " BK ", " SC),
     1,
     {"mount.mode: must not include write bits"}},
    {"mount mode setuid",
     CFG(MOUNT(", 'mode': '4400'") ", " BK ", " SC),
     1,
     {"mount.mode: setuid, setgid and sticky bits are not allowed"}},
    {"mount mode digit 8",
     CFG(MOUNT(", 'mode': '0800'") ", " BK ", " SC),
     1,
     {"mount.mode: must be an octal mode like '0400'"}},
    {"mount mode letters, dir_mode integer too big",
     CFG(MOUNT(", 'mode': 'r--', 'dir_mode': 4096") ", " BK ", " SC),
     2,
     {"mount.mode: must be an octal mode", "mount.dir_mode: must be an octal mode"}},
    {"mount mode empty and too long",
     CFG(MOUNT(", 'mode': '', 'dir_mode': '000555'") ", " BK ", " SC),
     2,
     {"mount.mode: must be an octal mode", "mount.dir_mode: must be an octal mode"}},
    {"mount mode boolean",
     CFG(MOUNT(", 'mode': true") ", " BK ", " SC),
     1,
     {"mount.mode: must be an octal mode"}},
    {"mount dir_mode sticky",
     CFG(MOUNT(", 'dir_mode': '1555'") ", " BK ", " SC),
     1,
     {"mount.dir_mode: setuid, setgid and sticky bits"}},
    {"mount keep_on_exit string",
     CFG(MOUNT(", 'type': 'directory', 'keep_on_exit': 'yes'") ", " BK ", " SC),
     1,
     {"mount.keep_on_exit: must be true or false"}},
    {"mount keep_on_exit with fuse",
     CFG(MOUNT(", 'keep_on_exit': true") ", " BK ", " SC),
     1,
     {"mount.keep_on_exit: only for 'type': 'directory'"}},
    {"mount allow_other with directory",
     CFG(MOUNT(", 'type': 'directory', 'allow_other': false") ", " BK ", " SC),
     1,
     {"mount.allow_other: only for 'type': 'fuse'"}},
    {"mount /dev/fd with directory",
     CFG("'mount': {'path': '/dev/fd/3', 'type': 'directory'}, " BK ", " SC),
     1,
     {"mount.path: a /dev/fd/N descriptor is only for 'type': 'fuse'"}},
    {"reserved names in a directory mount",
     CFG(MOUNT(
         ", 'type': 'directory'") ", " BK
                                  ", 'secrets': {'..data': {'backend': 'l', 'path': 'a'},"
                                  "              '..x/y': {'backend': 'l', 'path': 'a'},"
                                  "              'ok/..z': {'backend': 'l', 'path': "
                                  "'a'}}"),
     2,
     {"secrets.'..data': '..data' is not allowed: names beginning with '..' are "
      "reserved in a directory mount",
      "'..x/y' is not allowed: names beginning"}},
    {"mount allow_other string",
     CFG(MOUNT(", 'allow_other': 'yes'") ", " BK ", " SC),
     1,
     {"mount.allow_other: must be true or false"}},

    /* backends */
    {"backends not an object",
     CFG(MNT ", 'backends': [], " SC),
     1,
     {"cfg.json: backends: must be an object"}},
    {"backends empty",
     CFG(MNT ", 'backends': {}, " SC),
     1,
     {"backends: must define at least one backend"}},
    {"backend not an object",
     CFG(MNT ", 'backends': {'l': 'file'}, " SC),
     1,
     {"backends.l: must be an object"}},
    {"backend type missing",
     CFG(MNT ", 'backends': {'l': {'path': 'x'}}, " SC),
     1,
     {"backends.l: missing required key 'type'"}},
    {"backend type not a string",
     CFG(MNT ", 'backends': {'l': {'type': 1}}, " SC),
     1,
     {"backends.l.type: must be a string"}},
    {"backend type unknown",
     CFG(MNT ", 'backends': {'l': {'type': 'vault2'}}, " SC),
     1,
     {"backends.l.type: unknown backend type 'vault2' (known: file, dev, vault, aws)"}},
    {"backend name bad",
     CFG(MNT ", 'backends': {'my backend': {'type': 'file', 'path': 'x'}}, " SC),
     2,
     {"backends.'my backend': backend names must", "backend 'l' is not defined"}},
    {"file backend without path",
     CFG(MNT ", 'backends': {'l': {'type': 'file'}}, " SC),
     1,
     {"backends.l", "path"}},
    {"file backend unknown key",
     CFG(MNT ", 'backends': {'l': {'type': 'file', 'path': 'x', 'colour': 1}}, " SC),
     1,
     {"backends.l", "colour"}},
    {"dev backend bad ttl",
     CFG(MNT ", 'backends': {'l': {'type': 'dev', 'ttl': '5 minutes'}}, " SC),
     1,
     {"backends.l.ttl"}},

    /* secrets: the section and names */
    {"secrets not an object",
     CFG(MNT ", " BK ", 'secrets': ['a']"),
     1,
     {"cfg.json: secrets: must be an object"}},
    {"secrets empty",
     CFG(MNT ", " BK ", 'secrets': {}"),
     1,
     {"secrets: must define at least one secret"}},
    {"secret not an object",
     CFG(MNT ", " BK ", 'secrets': {'a': 'l'}"),
     1,
     {"secrets.a: must be an object"}},
    {"name with ..",
     CFG(MNT ", " BK ", 'secrets': {'../x': {'backend': 'l', 'path': 'a'}}"),
     1,
     {"cfg.json: secrets.'../x': '../x' is not allowed: path segment '..'"}},
    {"name absolute",
     CFG(MNT ", " BK ", 'secrets': {'/etc/x': {'backend': 'l', 'path': 'a'}}"),
     1,
     {"secrets.'/etc/x': '/etc/x' is not allowed: absolute path"}},
    {"name with empty segment",
     CFG(MNT ", " BK ", 'secrets': {'a//b': {'backend': 'l', 'path': 'a'}}"),
     1,
     {"is not allowed: empty path segment"}},
    {"name with trailing slash",
     CFG(MNT ", " BK ", 'secrets': {'a/': {'backend': 'l', 'path': 'a'}}"),
     1,
     {"is not allowed: trailing slash"}},
    {"name with . segment",
     CFG(MNT ", " BK ", 'secrets': {'./a': {'backend': 'l', 'path': 'a'}}"),
     1,
     {"is not allowed: path segment '.'"}},
    {"name empty",
     CFG(MNT ", " BK ", 'secrets': {'': {'backend': 'l', 'path': 'a'}}"),
     1,
     {"secrets.'': '' is not allowed: empty name"}},
    {"name with control character",
     CFG(MNT ", " BK ", 'secrets': {'a\\u0001b': {'backend': 'l', 'path': 'a'}}"),
     1,
     {"secrets.'a\\x01b'", "is not allowed: control character"}},
    {"file and directory clash",
     CFG(MNT ", " BK ", 'secrets': {'db': {'backend': 'l', 'path': 'a'},"
             " 'db/password': {'backend': 'l', 'path': 'a'},"
             " 'db/user': {'backend': 'l', 'path': 'a'}}"),
     1,
     {"secrets.db: 'db' is a file but 'db/password' needs it to be a directory"}},
    {"nested clash",
     CFG(MNT ", " BK ", 'secrets': {'a/b/c': {'backend': 'l', 'path': 'a'},"
             " 'a/b': {'backend': 'l', 'path': 'a'}}"),
     1,
     {"secrets.'a/b': 'a/b' is a file"}},

    /* secrets: keys */
    {"secret unknown key",
     CFG(MNT ", " BK ", " SEC(", 'colour': 'red'")),
     1,
     {"cfg.json: secrets.a.colour: unknown key 'colour'"}},
    {"secret missing backend and path",
     CFG(MNT ", " BK ", 'secrets': {'a': {}}"),
     2,
     {"secrets.a: missing required key 'backend'",
      "secrets.a: missing required key 'path'"}},
    {"secret backend undefined",
     CFG(MNT ", " BK ", 'secrets': {'a': {'backend': 'vault2', 'path': 'a'}}"),
     1,
     {"secrets.a.backend: backend 'vault2' is not defined in backends"}},
    {"secret backend not a string",
     CFG(MNT ", " BK ", 'secrets': {'a': {'backend': ['l'], 'path': 'a'}}"),
     1,
     {"secrets.a.backend: must be a string"}},
    {"secret path empty",
     CFG(MNT ", " BK ", 'secrets': {'a': {'backend': 'l', 'path': ''}}"),
     1,
     {"secrets.a.path: must not be empty"}},
    {"secret field empty",
     CFG(MNT ", " BK ", " SEC(", 'field': ''")),
     1,
     {"secrets.a.field: must not be empty"}},
    {"secret format unknown",
     CFG(MNT ", " BK ", " SEC(", 'format': 'yaml'")),
     1,
     {"secrets.a.format: must be one of raw, json, env, template"}},
    {"template format without template",
     CFG(MNT ", " BK ", " SEC(", 'format': 'template'")),
     1,
     {"secrets.a: missing required key 'template'"}},
    {"template with raw format",
     CFG(MNT ", " BK ", " SEC(", 'template': '{{x}}'")),
     1,
     {"secrets.a.template: is only valid with format 'template'"}},
    {"template not a string",
     CFG(MNT ", " BK ", " SEC(", 'format': 'template', 'template': 3")),
     1,
     {"secrets.a.template: must be a string"}},
    {"template in consul-template syntax",
     CFG(MNT ", " BK ", " SEC(", 'format': 'template', 'template': "
                              "'{{ with secret \\'secret/data/app\\' }}"
                              "{{ .Data.data.username }}{{ end }}'")),
     1,
     {"secrets.a.template: line 1, column 4: 'with' is a consul-template/Go template "
      "action; the template format substitutes {{key}} and {{a.b}} only"}},
    {"template key with Go field syntax on line 2",
     CFG(MNT ", " BK
             ", " SEC(", 'format': 'template', 'template': 'a={{a}}\\nb={{ .b }}'")),
     1,
     {"secrets.a.template: line 2, column 6: a key path starting with '.'"}},
    {"template tag unterminated",
     CFG(MNT ", " BK ", " SEC(", 'format': 'template', 'template': 'x={{ a'")),
     1,
     {"secrets.a.template: line 1, column 3: unterminated '{{' in template"}},
    {"decode not base64",
     CFG(MNT ", " BK ", " SEC(", 'decode': 'hex'")),
     1,
     {"secrets.a.decode: must be 'base64'"}},
    {"decode with json",
     CFG(MNT ", " BK ", " SEC(", 'format': 'json', 'decode': 'base64'")),
     1,
     {"secrets.a.decode: is only valid with format 'raw'"}},
    {"refresh zero",
     CFG(MNT ", " BK ", " SEC(", 'refresh': 0")),
     1,
     {"secrets.a.refresh: must be greater than zero"}},
    {"refresh words",
     CFG(MNT ", " BK ", " SEC(", 'refresh': '5 minutes'")),
     1,
     {"secrets.a.refresh: invalid duration '5 minutes': unknown unit"}},
    {"refresh negative",
     CFG(MNT ", " BK ", " SEC(", 'refresh': -1")),
     1,
     {"secrets.a.refresh: invalid duration: must not be negative"}},
    {"refresh boolean",
     CFG(MNT ", " BK ", " SEC(", 'refresh': true")),
     1,
     {"secrets.a.refresh: must be a duration"}},
    {"secret mode, uid, gid bad",
     CFG(MNT ", " BK ", " SEC(", 'mode': '0640', 'uid': 'root', 'gid': -5")),
     3,
     {"secrets.a.mode: must not include write bits", "secrets.a.uid: must be an integer",
      "secrets.a.gid: must be an integer"}},

    /* on_change */
    {"on_change not an object",
     ONCHANGE("'HUP'"),
     1,
     {"secrets.a.on_change: must be an object"}},
    {"on_change both",
     ONCHANGE("{'signal': 'HUP', 'pid_file': '/p', 'command': ['/x']}"),
     1,
     {"secrets.a.on_change: give either 'signal' or 'command', not both"}},
    {"on_change neither",
     ONCHANGE("{'debounce': '1s'}"),
     1,
     {"secrets.a.on_change: missing required key 'signal'"}},
    {"on_change bad signal",
     ONCHANGE("{'signal': 'FOO', 'pid_file': '/p'}"),
     1,
     {"secrets.a.on_change.signal: unknown signal 'FOO'"}},
    {"on_change signal without pid_file",
     ONCHANGE("{'signal': 'HUP'}"),
     1,
     {"secrets.a.on_change: missing required key 'pid_file'"}},
    {"on_change empty pid_file",
     ONCHANGE("{'signal': 'HUP', 'pid_file': ''}"),
     1,
     {"secrets.a.on_change.pid_file: must not be empty"}},
    {"on_change pid_file with command",
     ONCHANGE("{'command': ['/x'], 'pid_file': '/p'}"),
     1,
     {"secrets.a.on_change.pid_file: is only valid with 'signal'"}},
    {"on_change empty command",
     ONCHANGE("{'command': []}"),
     1,
     {"secrets.a.on_change.command: must be a non-empty array of strings"}},
    {"on_change command a string",
     ONCHANGE("{'command': '/bin/true'}"),
     1,
     {"secrets.a.on_change.command: must be a non-empty array"}},
    {"on_change relative argv0",
     ONCHANGE("{'command': ['bin/reload']}"),
     1,
     {"secrets.a.on_change.command[0]: must be an absolute path or a command name"}},
    {"on_change bad arguments",
     ONCHANGE("{'command': ['/bin/x', 3, '']}"),
     2,
     {"secrets.a.on_change.command[1]: must be a string",
      "secrets.a.on_change.command[2]: must not be empty"}},
    {"on_change unknown key and bad debounce",
     ONCHANGE("{'command': ['reload'], 'colour': 1, 'debounce': '1x'}"),
     2,
     {"secrets.a.on_change.colour: unknown key 'colour'",
      "secrets.a.on_change.debounce: invalid duration '1x': unknown unit"}},

    /* log */
    {"log not an object",
     CFG(MNT ", " BK ", " SC ", 'log': 'debug'"),
     1,
     {"cfg.json: log: must be an object"}},
    {"log level and format bad",
     CFG(MNT ", " BK ", " SC
             ", 'log': {'level': 'verbose', 'format': 'xml', 'colour': 1}"),
     3,
     {"log.level: must be one of debug, info, warn, error",
      "log.format: must be 'text' or 'json'", "log.colour: unknown key 'colour'"}},

    /* all problems in one pass */
    {"problems at every level at once",
     CFG(MOUNT(
         ", 'mode': '0666', 'x1': 1") ", 'backends': {'l': {'type': 'file', 'path': "
                                      "'x'}, 'v': {'type': 'nope'}}, "
                                      "'secrets': {'a': {'backend': 'l', 'path': 'a', "
                                      "'x2': 2}, '../b': {'backend': 'zz', 'path': 'b'}},"
                                      "'x3': 3"),
     7,
     {"mount.x1: unknown key", "secrets.a.x2: unknown key", "cfg.json: x3: unknown key",
      "backends.v.type: unknown backend type 'nope'"}},

    /* syntax */
    {"duplicate key",
     "{'mount': {'path': '/m'}, 'mount': {'path': '/n'}, " BK ", " SC "}",
     1,
     {"cfg.json: line 1, column 33: duplicate object key"}},
    {"malformed JSON",
     "{\n  'mount': {,\n}",
     1,
     {"cfg.json: line 2, column 13: string or", "expected near"}},
    {"truncated JSON", "{'mount': ", 1, {"cfg.json: line 1, column 10:", "end of file"}},
};

TEST(test_bad_configs_report_each_problem_once)
{
	for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
		const struct bad_case *c = &bad_cases[i];
		struct config *cfg = (struct config *)&cfg; /* must stay untouched */
		struct config *sentinel = cfg;
		bool ok = true;
		struct diag d;
		int rc;

		rc = parse(c->text, &d, &cfg);
		if (rc != SFS_EINVAL || cfg != sentinel || d.count != c->count) {
			fprintf(stderr, "  [%s] rc %d, %zu message(s), want %zu\n",
			        c->label, rc, d.count, c->count);
			ok = false;
		}
		for (size_t w = 0; w < MAX_WANT && c->want[w]; w++) {
			char *want = dq(c->want[w]);

			if (!any_contains(&d, want)) {
				fprintf(stderr, "  [%s] no message contains: %s\n",
				        c->label, want);
				ok = false;
			}
			free(want);
		}
		if (!ok) {
			dump(c->label, &d);
			test_failed_ = 1;
		}
		diag_release(&d);
	}
}

TEST(test_at_least_thirty_bad_configs_are_covered)
{
	CHECK(sizeof bad_cases / sizeof bad_cases[0] >= 30);
}

TEST(test_long_names_are_rejected)
{
	char name[1100], text[1400];
	struct config *cfg = NULL;
	struct diag d;

	memset(name, 'a', 256);
	name[256] = '\0';
	snprintf(text, sizeof text,
	         "{'mount': {'path': '/m'}, " BK ", 'secrets': {'%s':"
	         " {'backend': 'l', 'path': 'a'}}}",
	         name);
	CHECK_EQ_INT(parse(text, &d, &cfg), SFS_EINVAL);
	CHECK_EQ_INT(d.count, 1);
	CHECK(d.count && strstr(d.msgs[0], "path segment longer than 255 bytes"));
	/* The echoed name is cut short. */
	CHECK(d.count && strstr(d.msgs[0], "...\" is not allowed"));
	diag_release(&d);

	for (size_t i = 0; i < 1025; i++)
		name[i] = i % 200 == 199 ? '/' : 'a';
	name[1025] = '\0';
	snprintf(text, sizeof text,
	         "{'mount': {'path': '/m'}, " BK ", 'secrets': {'%s':"
	         " {'backend': 'l', 'path': 'a'}}}",
	         name);
	CHECK_EQ_INT(parse(text, &d, &cfg), SFS_EINVAL);
	CHECK_EQ_INT(d.count, 1);
	CHECK(d.count && strstr(d.msgs[0], "longer than 1024 bytes"));
	CHECK(cfg == NULL);
	diag_release(&d);
}

/* Builds a config around one secret named name (with ' for ") whose body is body. */
static char *config_with_secret(const char *name, const char *body)
{
	char *text = NULL;

	if (asprintf(&text, "{'mount': {'path': '/m'}, " BK ", 'secrets': {'%s': %s}}",
	             name, body) < 0)
		abort();
	return text;
}

TEST(test_over_long_names_are_refused_at_their_parent_not_cut)
{
	char *name = malloc(5001), *text;
	struct config *cfg = NULL;
	struct diag d;

	memset(name, 'a', 5000);
	name[5000] = '\0';
	text = config_with_secret(name, "{'backend': 'l', 'path': 'a', 'colour': 1}");
	CHECK_EQ_INT(parse(text, &d, &cfg), SFS_EINVAL);
	CHECK_EQ_INT(d.count, 1);
	if (d.count == 1)
		CHECK_STR_EQ(d.msgs[0],
		             "cfg.json: secrets: \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		             "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...\" is not "
		             "allowed: longer than 1024 bytes");
	diag_release(&d);
	free(text);

	/* A backend name no secret's "backend" could name. */
	name[300] = '\0';
	if (asprintf(&text,
	             "{'mount': {'path': '/m'}, 'backends': {'l': {'type': 'file',"
	             " 'path': 'x'}, '%s': {'type': 'file', 'path': 'x'}}, " SC "}",
	             name) < 0)
		abort();
	CHECK_EQ_INT(parse(text, &d, &cfg), SFS_EINVAL);
	CHECK_EQ_INT(d.count, 1);
	if (d.count == 1)
		CHECK_STR_EQ(d.msgs[0],
		             "cfg.json: backends: backend name \"aaaaaaaaaaaaaaaaaaaaaa"
		             "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		             "...\" is longer than 256 bytes");
	diag_release(&d);
	free(text);
	free(name);
}

TEST(test_the_longest_key_paths_are_whole)
{
	/* 1024 control characters: the longest name escapes to 4096 bytes. */
	char name[1024 * 6 + 1], want[8192], *text;
	struct config *cfg = NULL;
	struct diag d;
	size_t n = 0;

	for (int i = 0; i < 1024; i++)
		n += (size_t)snprintf(name + n, sizeof name - n, "\\u0001");
	text = config_with_secret(
	    name, "{'backend': 'l', 'path': 'a', 'on_change': {'command': ['/x', 3]}}");
	CHECK_EQ_INT(parse(text, &d, &cfg), SFS_EINVAL);
	CHECK_EQ_INT(d.count, 2);
	n = (size_t)snprintf(want, sizeof want, "cfg.json: secrets.\"");
	for (int i = 0; i < 1024; i++)
		n += (size_t)snprintf(want + n, sizeof want - n, "\\x01");
	snprintf(want + n, sizeof want - n, "\".on_change.command[1]: must be a string");
	if (d.count == 2) {
		CHECK_STR_CONTAINS(d.msgs[0], "is not allowed: control character");
		CHECK_STR_EQ(d.msgs[1], want);
	}
	diag_release(&d);
	free(text);

	/* A key too long to name in a path is reported at its object, in full. */
	char key[6001];
	memset(key, 'k', 6000);
	key[6000] = '\0';
	if (asprintf(&text, "{'mount': {'path': '/m'}, " BK ", " SC ", '%s': 1}", key) <
	    0)
		abort();
	CHECK_EQ_INT(parse(text, &d, &cfg), SFS_EINVAL);
	CHECK_EQ_INT(d.count, 1);
	if (d.count == 1) {
		CHECK(strncmp(d.msgs[0], "cfg.json: unknown key \"kkk", 26) == 0);
		CHECK_STR_CONTAINS(d.msgs[0],
		                   "...\" (the top level takes: mount, backends, "
		                   "secrets, log, startup_timeout, shutdown_timeout");
	}
	diag_release(&d);
	free(text);
}

TEST(test_messages_never_echo_secret_like_values)
{
	struct config *cfg = NULL;
	struct diag d;

	CHECK_EQ_INT(parse(CFG(MNT ", " BK ", " SEC(
	                       ", 'template': 'pw=TOPSECRET1', 'on_change':"
	                       " {'command': ['rel/TOPSECRET2', 'TOPSECRET3', 4]}")),
	                   &d, &cfg),
	             SFS_EINVAL);
	CHECK_EQ_INT(d.count, 3);
	CHECK(!any_contains(&d, "TOPSECRET"));
	diag_release(&d);

	/* jansson quotes the token it stopped at; a string token is dropped. */
	CHECK_EQ_INT(parse("{'mount': {'path': '/m' 'TOPSECRET4'}}", &d, &cfg),
	             SFS_EINVAL);
	CHECK_EQ_INT(d.count, 1);
	CHECK(!any_contains(&d, "TOPSECRET"));
	CHECK(any_contains(&d, "cfg.json: line 1, column"));
	diag_release(&d);

	CHECK_EQ_INT(parse("{'mount': {'path': TOPSECRET5}}", &d, &cfg), SFS_EINVAL);
	CHECK(!any_contains(&d, "TOPSECRET"));
	diag_release(&d);
}

/* --- names -------------------------------------------------------------- */

TEST(test_name_problems)
{
	static const struct {
		const char *name;
		const char *problem; /* NULL: valid */
	} cases[] = {
	    {"password", NULL},
	    {"db/password", NULL},
	    {"a/b/c/d.env", NULL},
	    {".hidden", NULL},
	    {"a/..b/c..", NULL},
	    {"with space", NULL},
	    {"", "empty name"},
	    {"/abs", "absolute path"},
	    {"a//b", "empty path segment"},
	    {"a/", "trailing slash"},
	    {"..", "path segment \"..\""},
	    {"a/../b", "path segment \"..\""},
	    {".", "path segment \".\""},
	    {"a/./b", "path segment \".\""},
	    {"a\nb", "control character"},
	    {"a\x7f", "control character"},
	    {"tab\there", "control character"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const char *got = config_name_problem(cases[i].name);

		if (cases[i].problem)
			CHECK_STR_EQ(got, cases[i].problem);
		else
			CHECK(got == NULL);
	}
}

TEST(test_name_length_limits)
{
	char name[1100];

	memset(name, 'a', 255);
	name[255] = '\0';
	CHECK(config_name_problem(name) == NULL);
	memset(name, 'a', 256);
	name[256] = '\0';
	CHECK_STR_EQ(config_name_problem(name), "path segment longer than 255 bytes");
	/* 1024 bytes in short segments: valid; one more byte: too long. */
	for (size_t i = 0; i < 1024; i++)
		name[i] = i % 200 == 199 ? '/' : 'a';
	name[1024] = '\0';
	CHECK(config_name_problem(name) == NULL);
	name[1024] = 'a';
	name[1025] = '\0';
	CHECK_STR_EQ(config_name_problem(name), "longer than 1024 bytes");
}

/* --- diag --------------------------------------------------------------- */

TEST(test_diag_formats_file_keypath_and_reason)
{
	struct diag d;

	diag_init(&d, "f.json");
	CHECK_EQ_INT(d.count, 0);
	diag_add(&d, "mount.mode", "must be %s", "octal");
	diag_add(&d, NULL, "no key path");
	diag_add(&d, "", "empty key path");
	CHECK_EQ_INT(d.count, 3);
	CHECK_STR_EQ(d.msgs[0], "f.json: mount.mode: must be octal");
	CHECK_STR_EQ(d.msgs[1], "f.json: no key path");
	CHECK_STR_EQ(d.msgs[2], "f.json: empty key path");
	diag_release(&d);
	CHECK_EQ_INT(d.count, 0);
	CHECK(d.msgs == NULL);

	diag_init(&d, NULL);
	diag_add(&d, "a.b", "why");
	diag_add(&d, NULL, "just why");
	CHECK_STR_EQ(d.msgs[0], "a.b: why");
	CHECK_STR_EQ(d.msgs[1], "just why");
	diag_release(&d);
}

TEST(test_diag_is_bounded)
{
	struct diag d;

	diag_init(&d, NULL);
	for (int i = 0; i < 1000; i++)
		diag_add(&d, NULL, "problem %d", i);
	CHECK(d.count > 10 && d.count <= 256);
	CHECK_STR_CONTAINS(d.msgs[d.count - 1], "too many problems");
	diag_release(&d);
}

TEST(test_diag_keypath_quotes_unusual_keys)
{
	char buf[64];

	CHECK_STR_EQ(diag_keypath(buf, sizeof buf, "secrets", "api-key_2"),
	             "secrets.api-key_2");
	CHECK_STR_EQ(diag_keypath(buf, sizeof buf, "secrets", "db/password"),
	             "secrets.\"db/password\"");
	CHECK_STR_EQ(diag_keypath(buf, sizeof buf, "secrets", "a.b"), "secrets.\"a.b\"");
	CHECK_STR_EQ(diag_keypath(buf, sizeof buf, "secrets", ""), "secrets.\"\"");
	CHECK_STR_EQ(diag_keypath(buf, sizeof buf, "s", "q\"\\\n"),
	             "s.\"q\\\"\\\\\\x0a\"");
	CHECK_STR_EQ(diag_keypath(buf, sizeof buf, NULL, "mount"), "mount");
	CHECK_STR_EQ(diag_keypath(buf, sizeof buf, "", "mount"), "mount");
	CHECK_STR_EQ(diag_keypath(buf, 8, "backends", "local"), "backend");
}

/* --- loading files ------------------------------------------------------ */

static char *write_temp(const char *text, size_t len)
{
	char *path = strdup("/tmp/test_config_XXXXXX");
	int fd = path ? mkstemp(path) : -1;

	if (fd < 0) {
		free(path);
		return NULL;
	}
	if (write(fd, text, len) != (ssize_t)len) {
		close(fd);
		unlink(path);
		free(path);
		return NULL;
	}
	close(fd);
	return path;
}

TEST(test_load_reads_a_file)
{
	char *json = dq(full_config);
	char *path = write_temp(json, strlen(json));
	struct config *cfg = NULL;
	struct diag d;

	CHECK(path != NULL);
	diag_init(&d, NULL);
	CHECK_EQ_INT(config_load(path, &d, &cfg), 0);
	CHECK(cfg != NULL);
	if (cfg) {
		CHECK_STR_EQ(cfg->file, path);
		CHECK_EQ_INT(cfg->nsecrets, 4);
	}
	CHECK(d.file == NULL);
	config_free(cfg);
	diag_release(&d);
	unlink(path);
	free(path);
	free(json);
}

TEST(test_load_names_the_file_in_messages)
{
	char *json = dq("{'mount': {'path': '/m', 'uid': -3}}");
	char *path = write_temp(json, strlen(json));
	char want[128];
	struct config *cfg = NULL;
	struct diag d;

	diag_init(&d, NULL);
	CHECK_EQ_INT(config_load(path, &d, &cfg), SFS_EINVAL);
	CHECK(cfg == NULL);
	CHECK_EQ_INT(d.count, 3);
	snprintf(want, sizeof want, "%s: mount.uid: must be an integer", path);
	CHECK(any_contains(&d, want));
	diag_release(&d);
	unlink(path);
	free(path);
	free(json);
}

TEST(test_load_missing_file)
{
	struct config *cfg = NULL;
	struct diag d;

	diag_init(&d, NULL);
	CHECK_EQ_INT(config_load("/nonexistent/secretfs.json", &d, &cfg), SFS_EIO);
	CHECK(cfg == NULL);
	CHECK_EQ_INT(d.count, 1);
	CHECK_STR_EQ(
	    d.msgs[0],
	    "/nonexistent/secretfs.json: cannot read: No such file or directory");
	diag_release(&d);

	diag_init(&d, NULL);
	CHECK_EQ_INT(config_load("/tmp", &d, &cfg), SFS_EIO);
	CHECK_EQ_INT(d.count, 1);
	CHECK_STR_CONTAINS(d.msgs[0], "/tmp: cannot read: Is a directory");
	diag_release(&d);
}

TEST(test_load_rejects_files_over_16_mib)
{
	size_t len = 16u * 1024 * 1024 + 1;
	char *big = malloc(len);
	char *path;
	struct config *cfg = NULL;
	struct diag d;

	CHECK(big != NULL);
	if (!big)
		return;
	memset(big, ' ', len);
	big[0] = '{';
	big[len - 1] = '}';
	path = write_temp(big, len);
	CHECK(path != NULL);
	diag_init(&d, NULL);
	CHECK_EQ_INT(config_load(path, &d, &cfg), SFS_EINVAL);
	CHECK(cfg == NULL);
	CHECK_EQ_INT(d.count, 1);
	CHECK(d.count &&
	      strstr(d.msgs[0], "cannot read: the file is larger than 16 MiB"));
	diag_release(&d);
	unlink(path);

	free(path);

	/* Exactly 16 MiB is read (and then found to lack every section). */
	big[len - 2] = '}';
	path = write_temp(big, len - 1);
	CHECK(path != NULL);
	diag_init(&d, NULL);
	CHECK_EQ_INT(config_load(path, &d, &cfg), SFS_EINVAL);
	CHECK_EQ_INT(d.count, 3);
	CHECK(any_contains(&d, "missing required key \"mount\""));
	diag_release(&d);
	unlink(path);
	free(path);
	free(big);
}

/* --- typed backend config ---------------------------------------------- */

TEST(test_file_and_dev_backend_messages_are_exact)
{
	struct config *cfg = NULL;
	struct diag d;

	CHECK_EQ_INT(parse(CFG(MNT ", 'backends': {'l': {'type': 'file', 'path': '',"
	                           " 'colour': 1}}, " SC),
	                   &d, &cfg),
	             SFS_EINVAL);
	CHECK_EQ_INT(d.count, 2);
	if (d.count == 2) {
		CHECK_STR_EQ(d.msgs[0],
		             "cfg.json: backends.l.path: must be a non-empty string");
		CHECK_STR_EQ(d.msgs[1],
		             "cfg.json: backends.l.colour: unknown key \"colour\" "
		             "(file backends take: type, path)");
	}
	diag_release(&d);

	CHECK_EQ_INT(
	    parse(CFG(MNT ", 'backends': {'l': {'type': 'file'}}, " SC), &d, &cfg),
	    SFS_EINVAL);
	CHECK_EQ_INT(d.count, 1);
	if (d.count == 1)
		CHECK_STR_EQ(d.msgs[0],
		             "cfg.json: backends.l: missing required key \"path\"");
	diag_release(&d);

	CHECK_EQ_INT(
	    parse(CFG(MNT ", 'backends': {'l': {'type': 'dev', 'ttl': 0.5,"
	                  " 'revoke_grace': 'x', 'username_prefix': 7, 'q': 1}}, " SC),
	          &d, &cfg),
	    SFS_EINVAL);
	CHECK_EQ_INT(d.count, 4);
	if (d.count == 4) {
		CHECK_STR_EQ(d.msgs[0],
		             "cfg.json: backends.l.ttl: must be at least 1000 ms");
		CHECK_STR_EQ(d.msgs[1],
		             "cfg.json: backends.l.revoke_grace: must be a duration "
		             "such as \"30s\" or a number of seconds");
		CHECK_STR_EQ(d.msgs[2],
		             "cfg.json: backends.l.username_prefix: must be a string "
		             "of at most 32 characters");
		CHECK_STR_EQ(d.msgs[3],
		             "cfg.json: backends.l.q: unknown key \"q\" (dev "
		             "backends take: type, ttl, revoke_grace, username_prefix)");
	}
	diag_release(&d);
}

struct sample_conf {
	const char *name;
	const char *label;
	uint64_t wait_ms;
	bool on;
	const json_t *extra;
};

static const struct backend_conf_key sample_keys[] = {
    BACKEND_CONF_TYPE_KEY,
    BACKEND_CONF_STRING_KEY(struct sample_conf, name, "name", .required = true),
    BACKEND_CONF_TEXT_KEY(struct sample_conf, label, "label", .max = 4),
    BACKEND_CONF_DURATION_KEY(struct sample_conf, wait_ms, "wait", .min = 10),
    BACKEND_CONF_BOOL_KEY(struct sample_conf, on, "on"),
    BACKEND_CONF_OBJECT_KEY(struct sample_conf, extra, "extra"),
};
static const struct backend_conf_spec sample_spec =
    BACKEND_CONF_SPEC("samples take", sample_keys);

TEST(test_backend_conf_parse_fills_the_typed_struct_once)
{
	char *text =
	    dq("{'type': 't', 'name': 'n', 'label': '', 'wait': '2s', 'on': true,"
	       " 'extra': {'k': 1}}");
	json_t *obj = json_loads(text, 0, NULL);
	struct sample_conf c = {.wait_ms = 7};
	struct diag d;

	CHECK_EQ_INT(backend_conf_parse(&sample_spec, obj, "s", NULL, &c), 0);
	CHECK_STR_EQ(c.name, "n");
	CHECK_STR_EQ(c.label, "");
	CHECK_EQ_INT(c.wait_ms, 2000);
	CHECK(c.on);
	CHECK(c.extra == json_object_get(obj, "extra"));
	json_decref(obj);
	free(text);

	/* Absent keys keep their defaults; problems fail without a diag too. */
	text = dq("{'label': 'toolong', 'wait': 0.001, 'on': 1, 'extra': [], 'x': 1}");
	obj = json_loads(text, 0, NULL);
	c = (struct sample_conf){.wait_ms = 7};
	CHECK_EQ_INT(backend_conf_parse(&sample_spec, obj, "s", NULL, &c), SFS_EINVAL);
	diag_init(&d, NULL);
	CHECK_EQ_INT(backend_conf_parse(&sample_spec, obj, "s", &d, &c), SFS_EINVAL);
	CHECK_EQ_INT(d.count, 6);
	if (d.count == 6) {
		CHECK_STR_EQ(d.msgs[0],
		             "s.label: must be a string of at most 4 characters");
		CHECK_STR_EQ(d.msgs[1], "s.wait: must be at least 10 ms");
		CHECK_STR_EQ(d.msgs[2], "s.on: must be true or false");
		CHECK_STR_EQ(d.msgs[3], "s.extra: must be an object");
		CHECK_STR_EQ(
		    d.msgs[4],
		    "s.x: unknown key \"x\" (samples take: type, name, label, wait, on, "
		    "extra)");
		CHECK_STR_EQ(d.msgs[5], "s: missing required key \"name\"");
	}
	CHECK_EQ_INT(c.wait_ms, 7);
	diag_release(&d);
	json_decref(obj);
	free(text);
}

TEST(test_free_accepts_null)
{
	config_free(NULL);
	CHECK(1);
}

TEST_MAIN(test_full_config_round_trips_every_field, test_minimal_config_gets_defaults,
          test_fuse_mount_takes_allow_other_fast_open_and_a_dev_fd_path,
          test_directory_mount_keep_on_exit_false,
          test_signal_names_accept_sig_prefix_and_any_case,
          test_modes_accept_octal_strings_and_integers,
          test_bad_configs_report_each_problem_once,
          test_at_least_thirty_bad_configs_are_covered, test_long_names_are_rejected,
          test_over_long_names_are_refused_at_their_parent_not_cut,
          test_the_longest_key_paths_are_whole,
          test_messages_never_echo_secret_like_values, test_name_problems,
          test_name_length_limits, test_diag_formats_file_keypath_and_reason,
          test_diag_is_bounded, test_diag_keypath_quotes_unusual_keys,
          test_load_reads_a_file, test_load_names_the_file_in_messages,
          test_load_missing_file, test_load_rejects_files_over_16_mib,
          test_file_and_dev_backend_messages_are_exact,
          test_backend_conf_parse_fills_the_typed_struct_once, test_free_accepts_null)
