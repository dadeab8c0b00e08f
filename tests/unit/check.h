/* check.h: the smallest test harness: CHECK() records a failure and goes on, the
 * program's exit status says whether any check failed. */
#ifndef NW_CHECK_H
#define NW_CHECK_H
#include <stdio.h>
#include <string.h>

static int check_failures;
static int check_count;

#define CHECK(cond) do { check_count++; if (!(cond)) { check_failures++; \
    fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); } } while (0)
#define CHECK_STR(a, b) do { const char *a_ = (a), *b_ = (b); check_count++; \
    if (!a_ || !b_ || strcmp(a_, b_) != 0) { check_failures++; \
    fprintf(stderr, "%s:%d: CHECK_STR failed: %s = \"%s\", want \"%s\"\n", __FILE__, __LINE__, \
            #a, a_ ? a_ : "(null)", b_ ? b_ : "(null)"); } } while (0)
#define CHECK_DONE() (printf("%d checks, %d failed\n", check_count, check_failures), \
                      check_failures ? 1 : 0)
#endif
