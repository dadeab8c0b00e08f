/*
 * make_journal_seeds: fuzz_journal's seed corpus, written by the journal itself.
 *
 *   make_journal_seeds DIR            write the seeds into DIR (tests/fuzz/seeds/journal)
 *   make_journal_seeds --check DIR    check that every seed in DIR still reads as what
 *                                     it was made to be (CTest unit.journal_seeds), so
 *                                     a change of the record format cannot leave the
 *                                     corpus behind unnoticed
 *
 * A real journal in a temporary state folder: messages on three topics in group
 * commits of 1 to 5, segments small enough to rotate (so seals, and checkpoints that
 * hold seqs, appear), closed and then reopened (recovered). The seeds:
 *   segment-N.nwj       each segment as the journal left it
 *   segment-torn.nwj    the last one with its last record cut short (a crash mid-write)
 *   segment-zeros.nwj   the last one followed by zeros (the tail written ahead)
 *   record-KIND-N.bin   one record's payload, two of each kind (fuzz_journal's way 1)
 *   framed-N.bin        0x01, then each payload of segment N as [u16 length LE][payload]
 *                       (the framed mode of fuzz_journal's way 3)
 * Epochs and checkpoint times differ from run to run; what the seeds hold does not.
 */
#include "fsutil.h"
#include "journal.h"
#include "journal_record.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *kinds[NW_JREC_KINDS] = {"checkpoint", "message", "commit", "seal"};

static int fail(const char *what, const char *name)
{
    fprintf(stderr, "make_journal_seeds: %s: %s\n", name, what);
    return -1;
}

static int read_all(const char *path, uint8_t **data, size_t *size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !(*data = malloc((size_t) st.st_size + 1))) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    *size = (size_t) st.st_size;
    ssize_t got = read(fd, *data, *size);
    close(fd);
    return got == (ssize_t) *size ? 0 : -1;
}

static int write_all(const char *dir, const char *name, const void *data, size_t size)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return fail(strerror(errno), path);
    bool ok = write(fd, data, size) == (ssize_t) size;
    close(fd);
    return ok ? 0 : fail("short write", path);
}

/* The records of segment file path, in order, through the journal's own reader: *n of
 * them in *out (free_frames() them, failed or not); *end where the last one ends, *bad
 * how many failed their CRC, *garbage whether bytes were skipped. -1 when the file
 * cannot be read or a frame does not decode. */
typedef struct {
    uint8_t *data;
    size_t len;
    int type;
} payload_t;

static int frames(const char *path, payload_t **out, size_t *n, uint64_t *end, uint64_t *bad,
                  bool *garbage)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0)
        return fail(strerror(errno), path);
    nw_jrec_reader_t r = {.fd = -1};
    nw_jrec_reader_reset(&r, fd, (uint64_t) st.st_size);
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    uint64_t off = 0, skipped;
    nw_jrec_frame_t f;
    int rc, ret = 0;
    *out = NULL;
    *n = 0;
    *end = 0;
    *bad = 0;
    *garbage = false;
    while ((rc = nw_jrec_next_frame(&r, NULL, &off, &f, bad, &skipped)) == NW_JREC_FRAME_OK) {
        nw_jrec_t rec;
        payload_t *p = realloc(*out, (*n + 1) * sizeof *p);
        if (p)
            *out = p;
        uint8_t *copy = p ? malloc(f.len ? f.len : 1) : NULL;
        if (!copy) {
            ret = fail("out of memory", path);
            break;
        }
        if (!nw_jrec_decode(&up, f.payload, f.len, &rec)) {
            free(copy);
            ret = fail("a record that does not decode", path);
            break;
        }
        memcpy(copy, f.payload, f.len);
        p[(*n)++] = (payload_t) {copy, f.len, rec.type};
        *garbage |= skipped != UINT64_MAX;
        *end = off;
    }
    if (ret == 0 && rc == NW_JREC_FRAME_ERR)
        ret = fail(strerror(errno), path);
    msgpack_unpacked_destroy(&up);
    free(r.buf);
    close(fd);
    return ret;
}

static void free_frames(payload_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(p[i].data);
    free(p);
}

/* ---------------------------------------------------------------- writing */

static int waiting;
static void on_commit(void *arg, int status)
{
    if (status != 0)
        *(int *) arg = status;
    waiting--;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void) st, (void) flag, (void) ftw;
    return remove(path);
}

static int write_journal(const char *state)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    nw_journal_options_t opt = {
        .sync = false, .segment_size = 1200, .dedup_window_ms = 365LL * 86400000};
    char err[256];
    nw_journal_t *j = nw_journal_open(&loop, state, opt, err, sizeof err);
    if (!j)
        return fail(err, state);
    static const char *topics[] = {"a", "telecoms", "world"};
    int status = 0, n = 0;
    for (int group = 0; group < 12 && status == 0; group++) {
        for (int k = 0; k <= group % 5; k++, n++) {
            const char *topic = topics[n % 3];
            char id[48], msg[96];
            if (n == 7)
                snprintf(id, sizeof id, "not-a-hex-id-%d", n); /* keyed by its SHA-1 */
            else
                snprintf(id, sizeof id, "%08x%032x", 0x5eed0000u + (unsigned) n, n * 7919u);
            int len = snprintf(msg, sizeof msg, "seed message %d on %s, group %d", n, topic,
                               group);
            if (nw_journal_append(j, topic, nw_journal_last_seq(j, topic) + 1, id,
                                  1764633600000 + n * 1000LL, msg, (size_t) len) != 0 ||
                nw_journal_commit(j, on_commit, &status) != 0) {
                status = errno ? -errno : -EIO;
                break;
            }
            waiting++;
        }
        while (waiting > 0)
            uv_run(&loop, UV_RUN_ONCE);
    }
    nw_journal_close(&j);
    uv_run(&loop, UV_RUN_DEFAULT);
    /* and once more as the daemon's restart reads it */
    if (status == 0 && !(j = nw_journal_open(&loop, state, opt, err, sizeof err)))
        return fail(err, state);
    nw_journal_close(&j);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return status == 0 ? 0 : fail(strerror(-status), "appending");
}

static int make(const char *dir)
{
    char state[] = "/tmp/nwj-seeds-XXXXXX", jdir[64], path[4096], name[64];
    if (!mkdtemp(state))
        return fail(strerror(errno), "mkdtemp");
    int rc = nw_fs_mkdir_p(dir) == 0 ? write_journal(state) : fail(strerror(errno), dir);
    snprintf(jdir, sizeof jdir, "%s/journal", state);
    int got[NW_JREC_KINDS] = {0};
    uint64_t num;
    for (num = 1; rc == 0; num++) {
        nw_jrec_segment_path(jdir, num, path, sizeof path);
        uint8_t *data;
        size_t size, n;
        payload_t *p;
        uint64_t end, bad;
        bool garbage;
        if (access(path, F_OK) != 0)
            break;
        if (read_all(path, &data, &size) != 0) {
            rc = fail(strerror(errno), path);
            break;
        }
        snprintf(name, sizeof name, "segment-%" PRIu64 ".nwj", num);
        rc = write_all(dir, name, data, size);
        p = NULL;
        n = 0;
        if (rc == 0 && (rc = frames(path, &p, &n, &end, &bad, &garbage)) == 0) {
            msgpack_sbuffer framed;
            msgpack_sbuffer_init(&framed);
            msgpack_sbuffer_write(&framed, "\x01", 1);
            for (size_t i = 0; i < n && rc == 0; i++) {
                uint8_t len[2] = {(uint8_t) p[i].len, (uint8_t) (p[i].len >> 8)};
                msgpack_sbuffer_write(&framed, (const char *) len, 2);
                msgpack_sbuffer_write(&framed, (const char *) p[i].data, p[i].len);
                if (got[p[i].type] < 2) {
                    snprintf(name, sizeof name, "record-%s-%d.bin", kinds[p[i].type],
                             ++got[p[i].type]);
                    rc = write_all(dir, name, p[i].data, p[i].len);
                }
            }
            snprintf(name, sizeof name, "framed-%" PRIu64 ".bin", num);
            if (rc == 0 && num <= 2)
                rc = write_all(dir, name, framed.data, framed.size);
            msgpack_sbuffer_destroy(&framed);
        }
        free_frames(p, n);
        /* the newest segment: as a crash cuts it, and with the zeros written ahead */
        nw_jrec_segment_path(jdir, num + 1, path, sizeof path);
        if (rc == 0 && access(path, F_OK) != 0) {
            rc = size < 8 ? fail("too short", name)
                          : write_all(dir, "segment-torn.nwj", data, size - 5);
            uint8_t *z = calloc(1, size + 4096);
            if (rc == 0 && z) {
                memcpy(z, data, size);
                rc = write_all(dir, "segment-zeros.nwj", z, size + 4096);
            }
            free(z);
        }
        free(data);
    }
    nftw(state, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    if (rc == 0 && num < 4)
        rc = fail("fewer than three segments: no seal between two full ones", dir);
    for (int k = 0; rc == 0 && k < NW_JREC_KINDS; k++)
        if (got[k] < 2)
            rc = fail("not two records of every kind", kinds[k]);
    return rc;
}

/* ---------------------------------------------------------------- checking */

static int check_file(const char *dir, const char *name, int *count)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    uint8_t *data = NULL;
    size_t size;
    payload_t *p = NULL;
    size_t n = 0;
    uint64_t end, bad;
    bool garbage;
    int rc = 0;
    if (read_all(path, &data, &size) != 0) {
        free(data);
        return fail(strerror(errno), path);
    }
    if (strncmp(name, "segment-", 8) == 0) {
        bool torn = strcmp(name, "segment-torn.nwj") == 0; /* its cut record is skipped */
        rc = frames(path, &p, &n, &end, &bad, &garbage);
        if (rc == 0 && (n == 0 || p[0].type != NW_JREC_CHECKPOINT || bad || (garbage && !torn)))
            rc = fail("not a segment of whole records starting with a checkpoint", path);
        size_t i = end;
        if (rc == 0 && strcmp(name, "segment-zeros.nwj") == 0) {
            while (i < size && data[i] == 0)
                i++;
            rc = i == size && end < size ? 0 : fail("not records then zeros", path);
        } else if (rc == 0 && torn) {
            uint32_t len;
            rc = size > end && size - end >= NW_JREC_HEADER &&
                         nw_jrec_header(data + end, NW_JREC_HEADER, &len) &&
                         end + NW_JREC_HEADER + len > size
                     ? 0
                     : fail("no record cut short", path);
        } else if (rc == 0 && end != size) {
            rc = fail("bytes after the last record", path);
        }
        count[0]++;
    } else if (strncmp(name, "record-", 7) == 0) {
        msgpack_unpacked up;
        msgpack_unpacked_init(&up);
        nw_jrec_t rec;
        size_t klen = strcspn(name + 7, "-");
        if (!nw_jrec_decode(&up, data, size, &rec) || strlen(kinds[rec.type]) != klen ||
            strncmp(name + 7, kinds[rec.type], klen) != 0)
            rc = fail("not a record of the kind its name says", path);
        else
            count[1 + rec.type]++;
        msgpack_unpacked_destroy(&up);
    } else if (strncmp(name, "framed-", 7) == 0) {
        msgpack_unpacked up;
        msgpack_unpacked_init(&up);
        size_t off = 1, records = 0;
        rc = size > 0 && data[0] == 1 ? 0 : fail("no framed-mode byte", path);
        while (rc == 0 && off < size) {
            nw_jrec_t rec;
            size_t len = size - off >= 2 ? (size_t) data[off] | (size_t) data[off + 1] << 8 : 0;
            if (size - off < 2 || len > size - off - 2 ||
                !nw_jrec_decode(&up, data + off + 2, len, &rec))
                rc = fail("a chunk that is not a record", path);
            off += 2 + len;
            records++;
        }
        if (rc == 0 && records == 0)
            rc = fail("no records", path);
        count[1 + NW_JREC_KINDS]++;
        msgpack_unpacked_destroy(&up);
    } else {
        rc = fail("a file this program does not make", path);
    }
    free_frames(p, n);
    free(data);
    return rc;
}

static int check(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return fail(strerror(errno), dir);
    int count[2 + NW_JREC_KINDS] = {0}, rc = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.' && check_file(dir, e->d_name, count) != 0)
            rc = -1;
    closedir(d);
    if (count[0] < 5) /* three or more segments, torn and zeros */
        rc = fail("fewer than five segment files", dir);
    for (int k = 0; k < NW_JREC_KINDS; k++)
        if (count[1 + k] < 2)
            rc = fail("fewer than two records of a kind", kinds[k]);
    if (count[1 + NW_JREC_KINDS] < 2)
        rc = fail("fewer than two framed files", dir);
    if (rc == 0)
        printf("%s: %d segments, %d framed, records:", dir, count[0], count[1 + NW_JREC_KINDS]);
    for (int k = 0; rc == 0 && k < NW_JREC_KINDS; k++)
        printf(" %s %d%s", kinds[k], count[1 + k], k + 1 < NW_JREC_KINDS ? "," : "\n");
    return rc;
}

int main(int argc, char **argv)
{
    nw_log_set_level(NW_LOG_ERR);
    if (argc == 3 && strcmp(argv[1], "--check") == 0)
        return check(argv[2]) == 0 ? 0 : 1;
    if (argc == 2 && argv[1][0] != '-')
        return make(argv[1]) == 0 && check(argv[1]) == 0 ? 0 : 1;
    fprintf(stderr, "usage: make_journal_seeds DIR | make_journal_seeds --check DIR\n");
    return 2;
}
