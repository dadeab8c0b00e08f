/* runner.h: the unit tests' harness. A test file declares its cases with TEST_IMPL(name)
 * and, if its cases need them, one TEST_SETUP and one TEST_TEARDOWN run around each case;
 * runner.c is the program's main(): it lists the cases (--list), runs one by name in its
 * own process (what CTest does: one test per case), or runs them all, each in a forked
 * child, so a crash, an abort, a sanitizer report, a leak or a timeout is reported with
 * the case's name and the others still run.
 *
 * A case registers itself (a constructor) where it is defined, so none can be left out
 * of a list: a case function written without TEST_IMPL is an unused static function,
 * which -Werror refuses.
 *
 * CHECK() records a failure and goes on; a case fails if any check failed, or if it ran
 * no check at all (a case that cannot fail is a mistake). A case that cannot run here
 * (no tmpfs to mount, no user namespace) calls nw_test_skip(why) and returns: it is
 * reported skipped (status 77, CTest's SKIP_RETURN_CODE) unless a check failed. */
#ifndef NW_RUNNER_H
#define NW_RUNNER_H
#include <stdio.h>
#include <string.h>

extern int check_failures; /* of the case running in this process */
extern int check_count;

#define CHECK(cond) \
    do { \
        check_count++; \
        if (!(cond)) { \
            check_failures++; \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
        } \
    } while (0)
#define CHECK_STR(a, b) \
    do { \
        const char *a_ = (a), *b_ = (b); \
        check_count++; \
        if (!a_ || !b_ || strcmp(a_, b_) != 0) { \
            check_failures++; \
            fprintf(stderr, "%s:%d: CHECK_STR failed: %s = \"%s\", want \"%s\"\n", __FILE__, \
                    __LINE__, #a, a_ ? a_ : "(null)", b_ ? b_ : "(null)"); \
        } \
    } while (0)

typedef struct {
    const char *name;
    void (*run)(void);
    int line; /* where it is defined: cases run and list in file order */
} nw_test_case_t;

void nw_test_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

void nw_test_register(const nw_test_case_t *c);
/* What setup returns: 0, or -1 when the case cannot run (it then fails, named). */
void nw_test_register_setup(int (*setup)(void));
void nw_test_register_teardown(void (*teardown)(void));

#define TEST_IMPL(name) \
    static void test_##name(void); \
    static const nw_test_case_t nw_case_##name = {#name, test_##name, __LINE__}; \
    __attribute__((constructor)) static void nw_register_##name(void) \
    { \
        nw_test_register(&nw_case_##name); \
    } \
    static void test_##name(void)

#define TEST_SETUP(fn) \
    __attribute__((constructor)) static void nw_register_setup_##fn(void) \
    { \
        nw_test_register_setup(fn); \
    }
#define TEST_TEARDOWN(fn) \
    __attribute__((constructor)) static void nw_register_teardown_##fn(void) \
    { \
        nw_test_register_teardown(fn); \
    }
#endif
