/*
 * examples/jobs_nexmark.h - the NEXMark event generator (examples/
 * jobs_nexmark_gen.c) and the event record the nexmark job's pipelines carry
 * (examples/job_nexmark.c).
 *
 * The generator follows the model of the reference NEXMark generator (Apache
 * Beam's NexmarkGenerator, as the Flink NEXMark repository uses it): event
 * number n has a kind fixed by its place in a cycle of 50 (1 person, 3
 * auctions, 46 bids), ids count up from 1000 per kind, sellers and bidders
 * are people already made, bids go to auctions already made, most of them
 * to "hot" auctions, by hot bidders, and most auctions are by hot sellers.
 * Event n's time is base + n * 1000 / rate ms, so time never decreases.
 * Event n is a pure function of (seed, n): its random numbers come from a
 * generator seeded by (seed, n) alone (Beam seeds java.util.Random with the
 * event id), so shards of a parallel generator make the same events as one.
 *
 * Public API only, as every job: this header includes <sluice/sluice.h>'s
 * types and nothing of the engine. Application names: nex_, NEX_.
 */
#ifndef SLUICE_EXAMPLES_JOBS_NEXMARK_H
#define SLUICE_EXAMPLES_JOBS_NEXMARK_H

#include <stdint.h>
#include <stdio.h>

/* Beam's GeneratorConfig and NexmarkConfiguration defaults. */
#define NEX_PERSON_PROPORTION  1
#define NEX_AUCTION_PROPORTION 3
#define NEX_BID_PROPORTION     46
#define NEX_PROPORTION_DENOM   50
#define NEX_FIRST_PERSON_ID    1000
#define NEX_FIRST_AUCTION_ID   1000
#define NEX_FIRST_CATEGORY_ID  10
#define NEX_NUM_CATEGORIES     5
/* 2015-07-15T00:00:00Z, Beam's NexmarkUtils.BASE_TIME */
#define NEX_BASE_TIME    1436918400000LL
#define NEX_DEFAULT_RATE 10000

enum { NEX_PERSON = 0, NEX_AUCTION = 1, NEX_BID = 2 };

#define NEX_NAME_MAX  32 /* person name, with its NUL */
#define NEX_CITY_MAX  24
#define NEX_STATE_MAX 8

/* One event as the job's pipelines carry it (fixed width, 88 bytes): the
 * fields the queries read. The strings that no query reads (email, credit
 * card, item name, description, channel, url, extra) exist only in the
 * dump (nex_dump_event). */
typedef struct nex_event {
    int64_t time; /* dateTime, ms since the epoch */
    int32_t kind; /* NEX_PERSON, NEX_AUCTION, NEX_BID */
    int32_t pad;
    union {
        struct {
            int64_t id;
            char name[NEX_NAME_MAX];
            char city[NEX_CITY_MAX];
            char state[NEX_STATE_MAX];
        } person;
        struct {
            int64_t id, initial_bid, reserve, expires, seller, category;
        } auction;
        struct {
            int64_t auction, bidder, price;
        } bid;
    };
} nex_event;

typedef struct nex_conf {
    uint64_t seed;
    uint64_t rate;     /* events per second of event time, >= 1 */
    int64_t base_time; /* time of event 0 (ms) */
} nex_conf;

/* The kind of event number n. */
static inline int nex_kind(uint64_t n)
{
    uint64_t off = n % NEX_PROPORTION_DENOM;
    return off < NEX_PERSON_PROPORTION                            ? NEX_PERSON
           : off < NEX_PERSON_PROPORTION + NEX_AUCTION_PROPORTION ? NEX_AUCTION
                                                                  : NEX_BID;
}

/* The time of event number n (ms). */
static inline int64_t nex_time(const nex_conf *c, uint64_t n)
{
    return c->base_time + (int64_t)(n * 1000 / c->rate);
}

/* Event number n into *e. */
void nex_event_make(const nex_conf *c, uint64_t n, nex_event *e);

/* Write event n as one CSV line (times in ms) to out:
 *   person,id,name,emailAddress,creditCard,city,state,dateTime,extra
 *   auction,id,itemName,description,initialBid,reserve,dateTime,expires,seller,category,extra
 *   bid,auction,bidder,price,channel,url,dateTime,extra
 * No field holds a comma, a quote or a newline. Returns 0 or -1 (write error). */
int nex_dump_event(const nex_conf *c, uint64_t n, FILE *out);

/* Parse one such line (without its newline) into *e. Returns 0, or -1 with
 * *reason set to a static string. */
int nex_parse_line(const char *line, size_t len, nex_event *e, const char **reason);

/* --- the join queries (examples/jobs_nexmark_joins.c) ----------------------------- */

/* Result records. q3: name,city,state,auction; q4: the winning price of a
 * closed auction (then a keyed aggregate of sl_agg_out records, key the
 * category, result int64 sum and count); q8: person,name,window_start. */
typedef struct nex_q3_out {
    int64_t auction;
    char name[NEX_NAME_MAX];
    char city[NEX_CITY_MAX];
    char state[NEX_STATE_MAX];
} nex_q3_out;
typedef struct nex_q4_closed {
    int64_t category, price;
} nex_q4_closed;
typedef struct nex_q8_out {
    int64_t person, window;
    char name[NEX_NAME_MAX];
} nex_q8_out;

/* Build query 3, 4 or 8 on the stream of events src (whose filters run at
 * src_p instances), the join at p instances; returns the result stream. */
struct sl_stream;
struct sl_stream *nex_join_query(struct sl_stream *src, int query, int src_p, int p);

#endif
