/*
 * tests/tools/trace_pipe.c - a small pipeline for the trace propagation
 * integration test (tests/integration/trace_kcat.sh): reads a topic of the
 * built-in broker to its end, passes every record through a flat_map (each
 * output from its input record), a key_by shuffle into two instances and a
 * rebalance, and writes the values to another topic with the broker sink;
 * with --kafka, the same through the Kafka source and sink (librdkafka) of
 * a Kafka cluster (`sluice broker serve`); with --kafka-eo CHK_DIR, that
 * with checkpoints in CHK_DIR and the sink exactly-once (its records
 * staged, then produced in each checkpoint's transaction). Prints
 * "malformed N" (sl_pipeline_trace_malformed) on stdout.
 *
 *   trace_pipe DIR IN_TOPIC OUT_TOPIC
 *   trace_pipe --kafka BOOTSTRAP IN_TOPIC OUT_TOPIC
 *   trace_pipe --kafka-eo CHK_DIR BOOTSTRAP IN_TOPIC OUT_TOPIC
 *
 * Exit 0, or 1 with the pipeline's message on stderr.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include "sluice/sluice.h"

static int copy_rec(sl_ctx *ctx, const void *rec, uint32_t len, int64_t ts, void *ud)
{
    return sl_emit_copy(ctx, ts, 0, rec, len);
}

static sl_bytes whole(const void *rec, uint32_t len, void *ud)
{
    sl_bytes b = {rec, len};
    return b;
}

static int value_only(sl_buf *out, const void *rec, uint32_t len, int64_t ts, void *ud)
{
    sl_bytes r = {rec, len};
    sl_bytes v = sl_broker_rec_value(r);
    return sl_buf_append(out, v.ptr, v.len);
}

int main(int argc, char **argv)
{
    int eo = argc == 6 && !strcmp(argv[1], "--kafka-eo");
    int kafka = eo || (argc == 5 && !strcmp(argv[1], "--kafka"));
    if (argc != 4 && !kafka) {
        fprintf(stderr, "usage: trace_pipe [--kafka BOOTSTRAP | --kafka-eo CHK_DIR BOOTSTRAP | "
                        "DIR] IN_TOPIC OUT_TOPIC\n");
        return 2;
    }
    int a = 1 + kafka + eo; /* where */
    const char *where = argv[a], *in = argv[a + 1], *out = argv[a + 2];
    sl_broker_source_conf sc = {.dir = where, .topic = in, .until_end = 1};
    sl_broker_sink_conf kc = {.dir = where, .topic = out, .format = value_only};
    sl_kafka_source_conf ksc = {.bootstrap = where, .topic = in, .until_end = 1};
    sl_kafka_sink_conf kkc = {.bootstrap = where,
                              .topic = out,
                              .format = value_only,
                              .transactional_id = eo ? "trace-pipe" : NULL};
    sl_pipeline *p = sl_pipeline_new();
    if (!p) return 1;
    sl_pipeline_set_threads(p, 2);
    sl_stream *s = kafka ? sl_pipeline_kafka(p, "in", &ksc, 0, NULL)
                         : sl_pipeline_broker(p, "in", &sc, 0, NULL);
    s = sl_stream_flat_map(s, "copy", copy_rec, NULL, 0);
    s = sl_stream_key_by(s, "by-record", whole, NULL);
    s = sl_stream_parallelism(s, 2);
    s = sl_stream_rebalance(s);
    sl_stream_sink(s, "out", kafka ? &sl_sink_kafka : &sl_sink_broker,
                   kafka ? (void *)&kkc : (void *)&kc);
    sl_pipeline_set_node_parallelism(p, "out", 1);
    if (eo) {
        sl_checkpoint_conf cc = {
            .dir = argv[2], .interval_ms = 50, .guarantee = SL_GUARANTEE_EXACTLY_ONCE};
        if (sl_pipeline_set_checkpoint(p, &cc)) {
            fprintf(stderr, "trace_pipe: %s\n", sl_pipeline_errmsg(p));
            sl_pipeline_free(p);
            return 1;
        }
    }
    int rc = sl_pipeline_run(p);
    if (rc) {
        fprintf(stderr, "trace_pipe: %s\n", sl_pipeline_errmsg(p));
        sl_pipeline_free(p);
        return 1;
    }
    printf("malformed %" PRIu64 "\n", sl_pipeline_trace_malformed(p));
    sl_pipeline_free(p);
    return 0;
}
