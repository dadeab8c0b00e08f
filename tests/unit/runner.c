/* runner.c: main() of every unit-test program (runner.h says how a file declares its
 * cases). Cases come in from the registrations the constructors made before main; what
 * leaves is a line per case on stdout and the exit status:
 *
 *   test_x --list          the cases' names, one a line, in file order (CTest registers
 *                          each as unit.test_x.NAME from this, at build time)
 *   test_x NAME...         those cases, one after the other, in this process: what CTest,
 *                          valgrind and a debugger run; status 0 if all passed
 *   test_x [--fork NAME...] every case (or those named), each in a forked child, with a
 *                          TAP line per case; a child that crashes, aborts, leaks (the
 *                          sanitizers' exit status) or outlives --timeout (default 120 s)
 *                          fails with its name and the next case still runs
 *
 * A case that calls exit(77) is skipped (CTest's SKIP_RETURN_CODE). */
#define _POSIX_C_SOURCE 200809L
#include "runner.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int check_failures;
int check_count;

#define MAX_CASES 256
#define SKIP_STATUS 77

static const nw_test_case_t *cases[MAX_CASES];
static size_t ncases;
static int (*setup_fn)(void);
static void (*teardown_fn)(void);
static int registration_error;
static int case_skipped; /* the case running in this process called nw_test_skip */

/* What a forked case leaves for its parent, in a shared page: whether it got to the end
 * of its teardown, and its counts, so that its exit status can be told apart from a
 * sanitizer's (which exits after the case, or instead of finishing it). */
typedef struct {
    int finished, count, failures;
} outcome_t;
static outcome_t *outcome;

void nw_test_skip(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("# skip: ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    case_skipped = 1;
}

void nw_test_register(const nw_test_case_t *c)
{
    if (ncases == MAX_CASES) {
        registration_error = 1;
        return;
    }
    cases[ncases++] = c;
}

void nw_test_register_setup(int (*setup)(void))
{
    if (setup_fn)
        registration_error = 1;
    setup_fn = setup;
}

void nw_test_register_teardown(void (*teardown)(void))
{
    if (teardown_fn)
        registration_error = 1;
    teardown_fn = teardown;
}

static int by_line(const void *a, const void *b)
{
    const nw_test_case_t *x = *(const nw_test_case_t *const *) a;
    const nw_test_case_t *y = *(const nw_test_case_t *const *) b;
    return (x->line > y->line) - (x->line < y->line);
}

static const nw_test_case_t *find_case(const char *name)
{
    for (size_t i = 0; i < ncases; i++)
        if (strcmp(cases[i]->name, name) == 0)
            return cases[i];
    return NULL;
}

/* One case in this process, with the file's setup and teardown around it: 0 passed, 1
 * failed, SKIP_STATUS skipped. */
static int run_here(const nw_test_case_t *c)
{
    check_failures = 0;
    check_count = 0;
    case_skipped = 0;
    if (setup_fn && setup_fn() != 0) {
        fprintf(stderr, "%s: setup failed\n", c->name);
        return 1;
    }
    c->run();
    if (teardown_fn)
        teardown_fn();
    if (outcome)
        *outcome = (outcome_t) {1, check_count, check_failures};
    printf("# %s: %d checks, %d failed\n", c->name, check_count, check_failures);
    if (case_skipped && !check_failures)
        return SKIP_STATUS;
    if (check_count == 0) {
        fprintf(stderr, "%s: ran no check\n", c->name);
        return 1;
    }
    return check_failures ? 1 : 0;
}

/* One case in a forked child. Returns 0 passed, 1 failed, SKIP_STATUS skipped, and says
 * why in why. */
static int run_forked(const nw_test_case_t *c, unsigned timeout_s, char *why, size_t whylen)
{
    sigset_t chld, old;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, &old); /* so its end cannot slip by before we wait */
    fflush(stdout);
    fflush(stderr);
    *outcome = (outcome_t) {0, 0, 0};
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(why, whylen, "cannot fork: %s", strerror(errno));
        sigprocmask(SIG_SETMASK, &old, NULL);
        return 1;
    }
    if (pid == 0) {
        sigprocmask(SIG_SETMASK, &old, NULL);
        exit(run_here(c)); /* exit, not _exit: LeakSanitizer and stdio run at exit */
    }

    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeout_s;
    int status = 0, timed_out = 0;
    for (;;) {
        pid_t got = waitpid(pid, &status, WNOHANG);
        if (got == pid)
            break;
        if (got < 0 && errno != EINTR) {
            snprintf(why, whylen, "cannot wait: %s", strerror(errno));
            sigprocmask(SIG_SETMASK, &old, NULL);
            return 1;
        }
        struct timespec now, left;
        clock_gettime(CLOCK_MONOTONIC, &now);
        left.tv_sec = deadline.tv_sec - now.tv_sec;
        left.tv_nsec = deadline.tv_nsec - now.tv_nsec;
        if (left.tv_nsec < 0) {
            left.tv_sec--;
            left.tv_nsec += 1000000000L;
        }
        if (left.tv_sec < 0) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            timed_out = 1;
            break;
        }
        sigtimedwait(&chld, NULL, &left); /* a child's end, the deadline, or EINTR */
    }
    sigprocmask(SIG_SETMASK, &old, NULL);

    if (timed_out) {
        snprintf(why, whylen, "timed out after %u s", timeout_s);
        return 1;
    }
    const char *when = outcome->finished ? "after its end" : "before its end";
    if (WIFSIGNALED(status)) {
        snprintf(why, whylen, "killed by signal %d (%s) %s", WTERMSIG(status),
                 strsignal(WTERMSIG(status)), when);
        return 1;
    }
    int code = WEXITSTATUS(status);
    if (outcome->finished && outcome->failures) {
        snprintf(why, whylen, "%d of %d checks failed", outcome->failures, outcome->count);
        return 1;
    }
    if (outcome->finished && outcome->count == 0) {
        snprintf(why, whylen, "ran no check");
        return 1;
    }
    if ((code == 0 && outcome->finished) || code == SKIP_STATUS) {
        why[0] = '\0';
        return code;
    }
    /* a sanitizer's report (a leak is found at exit), or an exit inside the case */
    snprintf(why, whylen, "exit status %d %s", code, when);
    return 1;
}

static int usage(const char *prog)
{
    fprintf(stderr, "usage: %s [--list] [--fork] [--timeout SECONDS] [CASE...]\n", prog);
    return 2;
}

int main(int argc, char **argv)
{
    int list = 0, fork_named = 0;
    unsigned timeout_s = 120;
    int first = argc;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--list") == 0) {
            list = 1;
        } else if (strcmp(argv[i], "--fork") == 0) {
            fork_named = 1;
        } else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
            char *end;
            unsigned long v = strtoul(argv[++i], &end, 10);
            if (*end || v == 0 || v > 86400)
                return usage(argv[0]);
            timeout_s = (unsigned) v;
        } else if (argv[i][0] == '-') {
            return usage(argv[0]);
        } else {
            first = i;
            break;
        }
    }
    if (registration_error) {
        fprintf(stderr, "%s: more than %d cases, or a second setup or teardown\n", argv[0],
                MAX_CASES);
        return 2;
    }
    qsort(cases, ncases, sizeof cases[0], by_line);
    if (list) {
        for (size_t i = 0; i < ncases; i++)
            printf("%s\n", cases[i]->name);
        return 0;
    }

    const nw_test_case_t *run[MAX_CASES];
    size_t nrun = 0;
    for (int i = first; i < argc; i++) {
        const nw_test_case_t *c = find_case(argv[i]);
        if (!c) {
            fprintf(stderr, "%s: no case named '%s' (--list names them)\n", argv[0], argv[i]);
            return 2;
        }
        if (nrun < MAX_CASES)
            run[nrun++] = c;
    }

    if (nrun && !fork_named) {
        int failed = 0, passed = 0;
        for (size_t i = 0; i < nrun; i++) {
            int rc = run_here(run[i]);
            failed += rc == 1;
            passed += rc == 0;
        }
        return failed ? 1 : passed ? 0 : SKIP_STATUS;
    }

    if (!nrun) {
        for (size_t i = 0; i < ncases; i++)
            run[i] = cases[i];
        nrun = ncases;
    }
    outcome = mmap(NULL, sizeof *outcome, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1,
                   0);
    if (outcome == MAP_FAILED) {
        perror("mmap");
        return 2;
    }
    printf("1..%zu\n", nrun);
    size_t failed = 0, skipped = 0;
    for (size_t i = 0; i < nrun; i++) {
        char why[128];
        int rc = run_forked(run[i], timeout_s, why, sizeof why);
        if (rc == SKIP_STATUS) {
            skipped++;
            printf("ok %zu - %s # SKIP\n", i + 1, run[i]->name);
        } else if (rc == 0) {
            printf("ok %zu - %s\n", i + 1, run[i]->name);
        } else {
            failed++;
            printf("not ok %zu - %s # %s\n", i + 1, run[i]->name, why);
        }
        fflush(stdout);
    }
    printf("# %zu cases: %zu passed, %zu failed, %zu skipped\n", nrun, nrun - failed - skipped,
           failed, skipped);
    return failed ? 1 : 0;
}
