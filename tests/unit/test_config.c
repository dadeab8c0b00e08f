/* test_config: built-in defaults, the ZPL file, flags over the file, errors with
 * reasons, and a reload that keeps what the command line said. */
#include "config.h"
#include "log.h"
#include "runner.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int load(nw_config_t *c, int argc, char **argv, char *err, size_t errlen)
{
    return nw_config_load(c, argc, argv, err, errlen);
}

/* A new config file holding text, its name written over path's XXXXXX template. */
static void write_config(char *path, const char *text)
{
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    FILE *f = fdopen(fd, "w");
    CHECK(f != NULL);
    if (!f)
        return;
    fputs(text, f);
    fclose(f);
}

TEST_IMPL(defaults)
{
    char err[512];
    nw_config_t c;
    char *none[] = {"newswired", NULL};
    CHECK(load(&c, 1, none, err, sizeof err) == 0);
    CHECK_STR(c.drop_dir, "./drop");
    CHECK_STR(c.state_dir, "./state");
    CHECK(c.publish_count == 1);
    CHECK_STR(c.publish[0], "tcp://127.0.0.1:5556");
    CHECK(c.max_size == 8u << 20);
    CHECK(c.sync);
    CHECK(c.file == NULL);
    nw_config_release(&c);
}

TEST_IMPL(file_flags_and_reload)
{
    char err[512];
    nw_config_t c;
    char path[] = "/tmp/nw-config-XXXXXX";
    write_config(path, "newswired\n    drop = \"/srv/drop\"\n    log-level = \"debug\"\n"
                       "    publish = \"ipc:///tmp/a\"\n    max-size = 1000\n"
                       "rules\n    space\n        words = \"rocket\"\n");

    /* flags win over the file; several --publish replace the default list */
    char *argv[] = {"newswired", "--config",          path,        "--log-level",  "warning",
                    "-p",        "tcp://127.0.0.1:1", "--publish", "ipc:///tmp/b", NULL};
    CHECK(load(&c, 9, argv, err, sizeof err) == 0);
    CHECK_STR(c.drop_dir, "/srv/drop");
    CHECK(c.log_level == NW_LOG_WARNING);
    CHECK(c.max_size == 1000);
    CHECK(c.publish_count == 2);
    CHECK_STR(c.publish[0], "tcp://127.0.0.1:1");
    CHECK_STR(c.publish[1], "ipc:///tmp/b");
    CHECK(c.file != NULL && zconfig_locate(c.file, "rules/space") != NULL);

    /* a reload re-reads the file but the flag's log level stays */
    FILE *f = fopen(path, "w");
    fputs("newswired\n    log-level = \"err\"\n    dedup-window = 5\n", f);
    fclose(f);
    CHECK(nw_config_reload(&c, 9, argv, err, sizeof err) == 0);
    CHECK(c.log_level == NW_LOG_WARNING);
    CHECK(c.dedup_window_ms == 5000);
    CHECK(zconfig_locate(c.file, "rules/space") == NULL);
    /* an invalid file on reload leaves everything as it was */
    f = fopen(path, "w");
    fputs("newswired\n    max-size = \"lots\"\n", f);
    fclose(f);
    CHECK(nw_config_reload(&c, 9, argv, err, sizeof err) == -1);
    CHECK(strstr(err, "max-size") != NULL);
    CHECK(c.dedup_window_ms == 5000);
    nw_config_release(&c);

    /* a reload changes only what may change without a restart */
    f = fopen(path, "w");
    fputs("newswired\n    max-size = 77\n    drop = \"/elsewhere\"\n    dedup-window = 6\n", f);
    fclose(f);
    char *plain[] = {"newswired", "--config", path, NULL};
    CHECK(load(&c, 3, plain, err, sizeof err) == 0);
    CHECK(c.max_size == 77 && c.dedup_window_ms == 6000);
    f = fopen(path, "w");
    fputs("newswired\n    max-size = 99\n    drop = \"/other\"\n    dedup-window = 7\n"
          "    log-level = debug\n    sync = off\n",
          f);
    fclose(f);
    CHECK(nw_config_reload(&c, 3, plain, err, sizeof err) == 0);
    CHECK(c.max_size == 77 && c.sync);
    CHECK_STR(c.drop_dir, "/elsewhere");
    CHECK(c.dedup_window_ms == 7000 && c.log_level == NW_LOG_DEBUG);
    nw_config_release(&c);

    /* sync: on by default, off by the file's sync = off or no-sync, or by --no-sync */
    CHECK(load(&c, 3, plain, err, sizeof err) == 0);
    CHECK(!c.sync);
    nw_config_release(&c);
    f = fopen(path, "w");
    fputs("newswired\n    no-sync = 1\n    insecure = off\n", f);
    fclose(f);
    CHECK(load(&c, 3, plain, err, sizeof err) == 0);
    CHECK(!c.sync && !c.insecure);
    nw_config_release(&c);
    char *flags[] = {"newswired", "--no-sync", "--insecure", "-d", "/d", NULL};
    CHECK(load(&c, 5, flags, err, sizeof err) == 0);
    CHECK(!c.sync && c.insecure);
    CHECK_STR(c.drop_dir, "/d");
    nw_config_release(&c);
    /* the flags that pick the file or answer are no keys of it */
    f = fopen(path, "w");
    fputs("newswired\n    help = 1\n", f);
    fclose(f);
    CHECK(load(&c, 3, plain, err, sizeof err) == -1);
    CHECK(strstr(err, "unknown setting 'help'") != NULL);
    nw_config_release(&c);
    char *no_mode[] = {"newswired", "--sync", NULL}; /* --sync takes a MODE */
    CHECK(load(&c, 2, no_mode, err, sizeof err) == -1);
    nw_config_release(&c);

    /* an unknown key in the file is named as unknown, whatever its value looks like */
    f = fopen(path, "w");
    fputs("newswired\n    frobnicate = \"yes\"\n", f);
    fclose(f);
    char *with_file[] = {"newswired", "--config", path, NULL};
    CHECK(load(&c, 3, with_file, err, sizeof err) == -1);
    CHECK(strstr(err, "unknown setting 'frobnicate'") != NULL);
    nw_config_release(&c);
    unlink(path);
}

/* --sync=MODE and the file's sync = MODE: on, off, early; anything else is an error */
TEST_IMPL(sync_modes)
{
    char err[512];
    nw_config_t c;
    char *def[] = {"newswired", NULL};
    CHECK(load(&c, 1, def, err, sizeof err) == 0);
    CHECK(c.sync == NW_SYNC_ON);
    nw_config_release(&c);
    char *early[] = {"newswired", "--sync=early", NULL};
    CHECK(load(&c, 2, early, err, sizeof err) == 0);
    CHECK(c.sync == NW_SYNC_EARLY);
    nw_config_release(&c);
    char *off[] = {"newswired", "--sync", "off", NULL};
    CHECK(load(&c, 3, off, err, sizeof err) == 0);
    CHECK(c.sync == NW_SYNC_OFF);
    nw_config_release(&c);
    char *typo[] = {"newswired", "--sync=eraly", NULL};
    CHECK(load(&c, 2, typo, err, sizeof err) == -1);
    CHECK(strstr(err, "sync 'eraly': expected on, off or early") != NULL);
    nw_config_release(&c);

    char path[] = "/tmp/nw-config-XXXXXX";
    write_config(path, "newswired\n    sync = early\n");
    char *file[] = {"newswired", "--config", path, NULL};
    CHECK(load(&c, 3, file, err, sizeof err) == 0);
    CHECK(c.sync == NW_SYNC_EARLY);
    nw_config_release(&c);
    char *file_then_flag[] = {"newswired", "--config", path, "--no-sync", NULL};
    CHECK(load(&c, 4, file_then_flag, err, sizeof err) == 0);
    CHECK(c.sync == NW_SYNC_OFF);
    nw_config_release(&c);
    unlink(path);
}

/* --burst-pool=WHEN: auto (-1) by default, on or off in the words sync takes; a typo
 * is an error, not read as on */
TEST_IMPL(burst_pool)
{
    char err[512];
    nw_config_t c;
    char *def[] = {"newswired", NULL};
    CHECK(load(&c, 1, def, err, sizeof err) == 0);
    CHECK(c.burst_pool == -1);
    nw_config_release(&c);
    char *off[] = {"newswired", "--burst-pool=off", NULL};
    CHECK(load(&c, 2, off, err, sizeof err) == 0);
    CHECK(c.burst_pool == 0);
    nw_config_release(&c);
    char *yes[] = {"newswired", "--burst-pool", "yes", NULL};
    CHECK(load(&c, 3, yes, err, sizeof err) == 0);
    CHECK(c.burst_pool == 1);
    nw_config_release(&c);
    char *typo[] = {"newswired", "--burst-pool=of", NULL};
    CHECK(load(&c, 2, typo, err, sizeof err) == -1);
    CHECK(strstr(err, "burst-pool 'of': expected on, off or auto") != NULL);
    nw_config_release(&c);

    char path[] = "/tmp/nw-config-XXXXXX";
    write_config(path, "newswired\n    burst-pool = on\n");
    char *file[] = {"newswired", "--config", path, NULL};
    CHECK(load(&c, 3, file, err, sizeof err) == 0);
    CHECK(c.burst_pool == 1);
    nw_config_release(&c);
    char *file_then_flag[] = {"newswired", "--config", path, "--burst-pool=auto", NULL};
    CHECK(load(&c, 4, file_then_flag, err, sizeof err) == 0);
    CHECK(c.burst_pool == -1);
    nw_config_release(&c);
    unlink(path);
}

/* ranges: seconds kept as milliseconds, limits enforced */
TEST_IMPL(ranges)
{
    char err[512];
    nw_config_t c;
    char *ranges[] = {"newswired", "--journal-max-age", "60", "--send-hwm",
                      "7",         "--commit-delay",    "5",  NULL};
    CHECK(load(&c, 7, ranges, err, sizeof err) == 0);
    CHECK(c.journal_max_age_ms == 60000 && c.send_hwm == 7 && c.commit_delay_ms == 5);
    nw_config_release(&c);
    char *small_segment[] = {"newswired", "--segment-size", "100", NULL};
    CHECK(load(&c, 3, small_segment, err, sizeof err) == -1);
    CHECK(strstr(err, "out of range") != NULL);
    nw_config_release(&c);
}

/* a bad command line is refused, naming what is wrong */
TEST_IMPL(bad_flags)
{
    char err[512];
    nw_config_t c;
    char *bad_level[] = {"newswired", "--log-level", "loud", NULL};
    CHECK(load(&c, 3, bad_level, err, sizeof err) == -1);
    CHECK(strstr(err, "loud") != NULL);
    nw_config_release(&c);

    char *unknown[] = {"newswired", "--frobnicate", NULL};
    CHECK(load(&c, 2, unknown, err, sizeof err) == -1);
    CHECK(strstr(err, "frobnicate") != NULL);
    nw_config_release(&c);

    char *missing[] = {"newswired", "--drop", NULL};
    CHECK(load(&c, 2, missing, err, sizeof err) == -1);
    CHECK(strstr(err, "needs a value") != NULL);
    nw_config_release(&c);

    char *stray[] = {"newswired", "extra", NULL};
    CHECK(load(&c, 2, stray, err, sizeof err) == -1);
    nw_config_release(&c);

    char *nofile[] = {"newswired", "--config", "/nonexistent/x.cfg", NULL};
    CHECK(load(&c, 3, nofile, err, sizeof err) == -1);
    CHECK(strstr(err, "/nonexistent/x.cfg") != NULL);
    nw_config_release(&c);
}
