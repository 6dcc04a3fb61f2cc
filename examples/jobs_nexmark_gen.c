/*
 * examples/jobs_nexmark_gen.c - the NEXMark event generator, the CSV dump
 * of its events and the parser of such dumps (examples/jobs_nexmark.h).
 *
 * The model is that of Beam's NexmarkGenerator (GeneratorConfig,
 * PersonGenerator, AuctionGenerator, BidGenerator, PriceGenerator,
 * StringsGenerator) with its default configuration: the code is our own.
 *
 *  - Event n is a person, an auction or a bid by n mod 50: 0 a person, 1..3
 *    auctions, 4..49 bids (1 : 3 : 46). The k-th person (base 0) has id
 *    1000 + k, the k-th auction 1000 + k; "last base-0 id" at n is the id of
 *    the latest person (auction) made at or before n.
 *  - Hot auctions (hotAuctionRatio 2): half of the bids go to the first of
 *    the latest block of 100 auctions; the rest to a random auction among the
 *    100 latest (numInFlightAuctions). Hot bidders (hotBiddersRatio 4): 3/4
 *    of the bids are by the second person of the latest block of 100 people;
 *    the rest by one of the 1000 latest people (numActivePeople). Hot
 *    sellers (hotSellersRatio 4): 3/4 of the auctions are by the first
 *    person of the latest block of 100; the rest by one of the latest 1000.
 *  - Where Beam allows ids not made yet (its AUCTION_ID_LEAD / PERSON_ID_LEAD
 *    of 10, and the hot bidder "second person of the block" before that
 *    person exists), we keep to ids already made: a bid's auction and
 *    bidder and an auction's seller always exist before the event.
 *  - Prices: round(10^(6u) * 100), u uniform in [0, 1) (100 .. 10^8 cents).
 *  - An auction expires 1 + U[0, 2h) ms after its time, h the time until
 *    the auction 100 auctions later (Beam's nextAuctionLengthMs).
 *  - Time of event n: base + n * 1000 / rate ms (an inter-event delay of
 *    10^6 / rate µs); never decreasing.
 *  - Strings: letters and spaces only (no comma, quote or newline), so the
 *    dump is plain CSV; names, cities and states from Beam's lists.
 *
 * Randomness: two splitmix64 streams per event, seeded from (seed, n) only:
 * one for the numbers every query may read (nex_event_make), one for the
 * strings only the dump writes, so that making the pipeline's records never
 * pays for the strings and yet the dump and the records agree.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include "jobs_nexmark.h"

#define HOT_AUCTION_RATIO    2 /* NexmarkConfiguration defaults */
#define HOT_SELLERS_RATIO    4
#define HOT_BIDDERS_RATIO    4
#define NUM_ACTIVE_PEOPLE    1000
#define NUM_INFLIGHT_AUCTION 100
#define HOT_BLOCK            100 /* the models' HOT_AUCTION_RATIO, HOT_BIDDER_RATIO, ... */
#define AVG_PERSON_BYTES     200
#define AVG_AUCTION_BYTES    500
#define AVG_BID_BYTES        100

static const char *const first_names[] = {"Peter", "Paul",  "Luke",  "John",   "Saul",  "Vicky",
                                          "Kate",  "Julie", "Sarah", "Deiter", "Walter"};
static const char *const last_names[] = {"Shultz", "Abrams", "Spencer", "White", "Bartels",
                                         "Walton", "Smith",  "Jones",   "Noris"};
static const char *const cities[] = {"Phoenix",  "Los Angeles", "San Francisco", "Boise",
                                     "Portland", "Bend",        "Redmond",       "Seattle",
                                     "Kent",     "Cheyenne"};
static const char *const states[] = {"AZ", "CA", "ID", "OR", "WA", "WY"};
static const char *const hot_channels[] = {"Google", "Facebook", "Baidu", "Apple"};
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* --- randomness --------------------------------------------------------------------- */

typedef struct rng {
    uint64_t s;
} rng;

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t rng_next(rng *r)
{
    r->s += 0x9E3779B97F4A7C15ull;
    return mix64(r->s);
}

/* Uniform in [0, n) (n >= 1; the modulo bias is below 2^-40 for our n). */
static uint64_t rng_below(rng *r, uint64_t n)
{
    return n ? rng_next(r) % n : 0;
}

static double rng_unit(rng *r)
{
    return (double)(rng_next(r) >> 11) * 0x1p-53;
}

static void rng_seed(rng *r, const nex_conf *c, uint64_t n, uint64_t stream)
{
    r->s = mix64(c->seed * 0xD1B54A32D192ED03ull ^ mix64(n + 0x9E3779B97F4A7C15ull) ^ stream);
}

/* --- ids ------------------------------------------------------------------------------ */

static int64_t last_base0_person(uint64_t n)
{
    uint64_t epoch = n / NEX_PROPORTION_DENOM, off = n % NEX_PROPORTION_DENOM;
    if (off >= NEX_PERSON_PROPORTION) off = NEX_PERSON_PROPORTION - 1;
    return (int64_t)(epoch * NEX_PERSON_PROPORTION + off);
}

/* -1 before the first auction */
static int64_t last_base0_auction(uint64_t n)
{
    int64_t epoch = (int64_t)(n / NEX_PROPORTION_DENOM), off = (int64_t)(n % NEX_PROPORTION_DENOM);
    if (off < NEX_PERSON_PROPORTION) {
        epoch--;
        off = NEX_AUCTION_PROPORTION - 1;
    } else if (off >= NEX_PERSON_PROPORTION + NEX_AUCTION_PROPORTION) {
        off = NEX_AUCTION_PROPORTION - 1;
    } else {
        off -= NEX_PERSON_PROPORTION;
    }
    return epoch * NEX_AUCTION_PROPORTION + off;
}

/* One of the NUM_ACTIVE_PEOPLE latest people (made at or before n). */
static int64_t next_base0_person(uint64_t n, rng *r)
{
    int64_t people = last_base0_person(n) + 1;
    int64_t active = people < NUM_ACTIVE_PEOPLE ? people : NUM_ACTIVE_PEOPLE;
    return people - active + (int64_t)rng_below(r, (uint64_t)active);
}

/* One of the in-flight auctions (made at or before n; n is a bid, so one exists). */
static int64_t next_base0_auction(uint64_t n, rng *r)
{
    int64_t last = last_base0_auction(n);
    int64_t lo = last - NUM_INFLIGHT_AUCTION > 0 ? last - NUM_INFLIGHT_AUCTION : 0;
    return lo + (int64_t)rng_below(r, (uint64_t)(last - lo + 1));
}

static int64_t next_price(rng *r)
{
    return llround(pow(10.0, rng_unit(r) * 6.0) * 100.0);
}

/* --- events --------------------------------------------------------------------------- */

void nex_event_make(const nex_conf *c, uint64_t n, nex_event *e)
{
    rng r;
    rng_seed(&r, c, n, 0);
    memset(e, 0, sizeof(*e));
    int64_t t = nex_time(c, n);
    e->time = t;
    e->kind = nex_kind(n);
    if (e->kind == NEX_PERSON) {
        e->person.id = last_base0_person(n) + NEX_FIRST_PERSON_ID;
        snprintf(e->person.name, sizeof(e->person.name), "%s %s",
                 first_names[rng_below(&r, COUNT(first_names))],
                 last_names[rng_below(&r, COUNT(last_names))]);
        snprintf(e->person.city, sizeof(e->person.city), "%s",
                 cities[rng_below(&r, COUNT(cities))]);
        snprintf(e->person.state, sizeof(e->person.state), "%s",
                 states[rng_below(&r, COUNT(states))]);
    } else if (e->kind == NEX_AUCTION) {
        int64_t last_p = last_base0_person(n);
        e->auction.id = last_base0_auction(n) + NEX_FIRST_AUCTION_ID;
        int64_t seller = rng_below(&r, HOT_SELLERS_RATIO) > 0 ? (last_p / HOT_BLOCK) * HOT_BLOCK
                                                              : next_base0_person(n, &r);
        e->auction.seller = seller + NEX_FIRST_PERSON_ID;
        e->auction.category = NEX_FIRST_CATEGORY_ID + (int64_t)rng_below(&r, NEX_NUM_CATEGORIES);
        e->auction.initial_bid = next_price(&r);
        /* the time until the auction NUM_INFLIGHT_AUCTION auctions later */
        uint64_t ahead =
            (uint64_t)NUM_INFLIGHT_AUCTION * NEX_PROPORTION_DENOM / NEX_AUCTION_PROPORTION;
        int64_t horizon = nex_time(c, n + ahead) - t;
        int64_t span = horizon * 2 > 1 ? horizon * 2 : 1;
        e->auction.expires = t + 1 + (int64_t)rng_below(&r, (uint64_t)span);
        e->auction.reserve = e->auction.initial_bid + next_price(&r);
    } else {
        int64_t last_a = last_base0_auction(n), last_p = last_base0_person(n);
        int64_t auction = rng_below(&r, HOT_AUCTION_RATIO) > 0 ? (last_a / HOT_BLOCK) * HOT_BLOCK
                                                               : next_base0_auction(n, &r);
        int64_t bidder;
        if (rng_below(&r, HOT_BIDDERS_RATIO) > 0) {
            bidder = (last_p / HOT_BLOCK) * HOT_BLOCK + 1; /* the block's second person */
            if (bidder > last_p) bidder = last_p;          /* not made yet: the latest */
        } else {
            bidder = next_base0_person(n, &r);
        }
        e->bid.auction = auction + NEX_FIRST_AUCTION_ID;
        e->bid.bidder = bidder + NEX_FIRST_PERSON_ID;
        e->bid.price = next_price(&r);
    }
}

/* --- the dump ------------------------------------------------------------------------- */

typedef struct line {
    char buf[2048];
    size_t len;
} line;

static void put(line *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(line *l, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(l->buf + l->len, sizeof(l->buf) - l->len, fmt, ap);
    va_end(ap);
    if (k > 0)
        l->len += (size_t)k < sizeof(l->buf) - l->len ? (size_t)k : sizeof(l->buf) - l->len - 1;
}

/* Letters (and, unless letters_only, one space in 13 but never first or
 * last), exactly len of them. */
static void put_letters(line *l, rng *r, size_t len, int letters_only)
{
    if (len > sizeof(l->buf) - l->len - 1) len = sizeof(l->buf) - l->len - 1;
    for (size_t i = 0; i < len; i++)
        l->buf[l->len++] = !letters_only && i > 0 && i + 1 < len && rng_below(r, 13) == 0
                               ? ' '
                               : (char)('a' + rng_below(r, 26));
    l->buf[l->len] = 0;
}

/* StringsGenerator.nextString: 3 .. max-1 characters. */
static size_t put_string(line *l, rng *r, size_t max, int letters_only)
{
    size_t len = 3 + (size_t)rng_below(r, max - 3);
    put_letters(l, r, len, letters_only);
    return len;
}

/* StringsGenerator.nextExtra: bring the event to about avg bytes (+-20 %). */
static void put_extra(line *l, rng *r, size_t cur, size_t avg)
{
    if (cur > avg) return;
    size_t want = avg - cur;
    size_t delta = (size_t)llround((double)want * 0.2);
    size_t len = want - delta + (delta ? (size_t)rng_below(r, 2 * delta) : 0);
    put_letters(l, r, len, 1);
}

int nex_dump_event(const nex_conf *c, uint64_t n, FILE *out)
{
    nex_event e;
    nex_event_make(c, n, &e);
    rng r;
    rng_seed(&r, c, n, 0x5851F42D4C957F2Dull);
    line l = {.len = 0};
    l.buf[0] = 0;
    if (e.kind == NEX_PERSON) {
        put(&l, "person,%" PRId64 ",%s,", e.person.id, e.person.name);
        size_t mark = l.len;
        put_string(&l, &r, 7, 1);
        put(&l, "@");
        put_string(&l, &r, 5, 1);
        put(&l, ".com,");
        size_t email = l.len - mark - 1;
        put(&l, "%04u %04u %04u %04u,", (unsigned)rng_below(&r, 10000),
            (unsigned)rng_below(&r, 10000), (unsigned)rng_below(&r, 10000),
            (unsigned)rng_below(&r, 10000));
        put(&l, "%s,%s,%" PRId64 ",", e.person.city, e.person.state, e.time);
        size_t cur =
            8 + strlen(e.person.name) + email + 19 + strlen(e.person.city) + strlen(e.person.state);
        put_extra(&l, &r, cur, AVG_PERSON_BYTES);
    } else if (e.kind == NEX_AUCTION) {
        put(&l, "auction,%" PRId64 ",", e.auction.id);
        size_t name = put_string(&l, &r, 20, 0);
        put(&l, ",");
        size_t desc = put_string(&l, &r, 100, 0);
        put(&l, ",%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64 ",",
            e.auction.initial_bid, e.auction.reserve, e.time, e.auction.expires, e.auction.seller,
            e.auction.category);
        put_extra(&l, &r, 8 + name + desc + 8 * 5, AVG_AUCTION_BYTES);
    } else {
        put(&l, "bid,%" PRId64 ",%" PRId64 ",%" PRId64 ",", e.bid.auction, e.bid.bidder,
            e.bid.price);
        if (rng_below(&r, 2) == 0) {
            const char *ch = hot_channels[rng_below(&r, COUNT(hot_channels))];
            put(&l, "%s,https://www.nexmark.com/%s/item.htm?query=1,", ch, ch);
        } else {
            unsigned id = (unsigned)rng_below(&r, 10000);
            put(&l, "channel-%u,https://www.nexmark.com/", id);
            put_string(&l, &r, 8, 1);
            put(&l, "/");
            put_string(&l, &r, 8, 1);
            put(&l, "/item.htm?query=1&channel_id=%u,", id);
        }
        put(&l, "%" PRId64 ",", e.time);
        put_extra(&l, &r, 32, AVG_BID_BYTES);
    }
    put(&l, "\n");
    return fwrite(l.buf, 1, l.len, out) == l.len ? 0 : -1;
}

/* --- parsing a dump ------------------------------------------------------------------- */

static int parse_i64(const char *p, size_t len, int64_t *out)
{
    if (len == 0 || len > 20) return -1;
    char buf[24];
    memcpy(buf, p, len);
    buf[len] = 0;
    if (buf[0] != '-' && (buf[0] < '0' || buf[0] > '9')) return -1;
    char *end;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (*end || errno) return -1;
    *out = v;
    return 0;
}

#define MAX_FIELDS 11

typedef struct field {
    const char *p;
    size_t len;
} field;

/* Numbers of a line: field index and what to call it in a message. */
typedef struct numf {
    int at;
    const char *bad;
    int64_t *to;
} numf;

static int copy_str(char *dst, size_t cap, const field *f)
{
    if (f->len >= cap || memchr(f->p, '"', f->len)) return -1;
    memcpy(dst, f->p, f->len);
    dst[f->len] = 0;
    return 0;
}

int nex_parse_line(const char *s, size_t len, nex_event *e, const char **reason)
{
    field f[MAX_FIELDS + 1];
    int nf = 0;
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || s[i] == ',') {
            if (nf == MAX_FIELDS + 1) {
                *reason = "too many fields";
                return -1;
            }
            f[nf].p = s + start;
            f[nf].len = i - start;
            nf++;
            start = i + 1;
        }
    }
    memset(e, 0, sizeof(*e));
#define IS(name) (f[0].len == sizeof(name) - 1 && memcmp(f[0].p, name, sizeof(name) - 1) == 0)
    numf nums[7];
    int nn = 0;
    if (IS("person")) {
        if (nf != 9) {
            *reason = "a person line has 9 fields: "
                      "person,id,name,emailAddress,creditCard,city,state,dateTime,extra";
            return -1;
        }
        e->kind = NEX_PERSON;
        if (copy_str(e->person.name, sizeof(e->person.name), &f[2])) {
            *reason = "person name longer than 31 bytes or with a quote";
            return -1;
        }
        if (copy_str(e->person.city, sizeof(e->person.city), &f[5])) {
            *reason = "city longer than 23 bytes or with a quote";
            return -1;
        }
        if (copy_str(e->person.state, sizeof(e->person.state), &f[6])) {
            *reason = "state longer than 7 bytes or with a quote";
            return -1;
        }
        nums[nn++] = (numf){1, "bad person id", &e->person.id};
        nums[nn++] = (numf){7, "bad dateTime", &e->time};
    } else if (IS("auction")) {
        if (nf != 11) {
            *reason = "an auction line has 11 fields: auction,id,itemName,description,"
                      "initialBid,reserve,dateTime,expires,seller,category,extra";
            return -1;
        }
        e->kind = NEX_AUCTION;
        nums[nn++] = (numf){1, "bad auction id", &e->auction.id};
        nums[nn++] = (numf){4, "bad initialBid", &e->auction.initial_bid};
        nums[nn++] = (numf){5, "bad reserve", &e->auction.reserve};
        nums[nn++] = (numf){6, "bad dateTime", &e->time};
        nums[nn++] = (numf){7, "bad expires", &e->auction.expires};
        nums[nn++] = (numf){8, "bad seller", &e->auction.seller};
        nums[nn++] = (numf){9, "bad category", &e->auction.category};
    } else if (IS("bid")) {
        if (nf != 8) {
            *reason =
                "a bid line has 8 fields: bid,auction,bidder,price,channel,url,dateTime,extra";
            return -1;
        }
        e->kind = NEX_BID;
        nums[nn++] = (numf){1, "bad auction", &e->bid.auction};
        nums[nn++] = (numf){2, "bad bidder", &e->bid.bidder};
        nums[nn++] = (numf){3, "bad price", &e->bid.price};
        nums[nn++] = (numf){6, "bad dateTime", &e->time};
    } else {
        *reason = "the first field must be person, auction or bid";
        return -1;
    }
#undef IS
    for (int i = 0; i < nn; i++) {
        if (parse_i64(f[nums[i].at].p, f[nums[i].at].len, nums[i].to)) {
            *reason = nums[i].bad;
            return -1;
        }
    }
    return 0;
}
