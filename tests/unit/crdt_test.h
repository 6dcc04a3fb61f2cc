/*
 * tests/unit/crdt_test.h - what the CRDT tests share: a seeded PRNG
 * (splitmix64, so that a failing seed reproduces on any machine) and a
 * failure macro that prints the seed.
 */
#ifndef SLUICE_TESTS_CRDT_TEST_H
#define SLUICE_TESTS_CRDT_TEST_H

#include <stdint.h>

typedef struct rng {
    uint64_t s;
} rng;

static inline uint64_t rng_next(rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [0, n), n > 0. */
static inline uint32_t rng_below(rng *r, uint32_t n)
{
    return (uint32_t)(rng_next(r) % n);
}

/* Fail with the seed that reproduces it. */
#define CHECK_SEED(cond, seed, ...)                                 \
    do {                                                            \
        if (!(cond)) {                                              \
            print_error("seed %llu: ", (unsigned long long)(seed)); \
            fail_msg(__VA_ARGS__);                                  \
        }                                                           \
    } while (0)

#endif
