/*
 * tests/otlp/otlp_spans.c - a driver for tests/integration/otlp_schema.sh:
 * writes spans of every shape through a tracer and the OTLP/JSON file
 * exporter, so that an independent decoder (protobufjs with the
 * OpenTelemetry proto files) can check every line.
 *
 *   otlp_spans FILE N    N traces (N >= 1) appended to FILE, then prints
 *                        "spans: S" (the number of spans written)
 *
 * Each trace: a root span (SERVER, continuing a remote traceparent and
 * tracestate on odd traces, which its descendants keep: traceState) with
 * one attribute of each type and a NaN and infinite double; a child with a link, an error status whose message holds quotes,
 * control characters and invalid UTF-8; a grandchild with more attributes
 * than a span keeps (droppedAttributesCount) and more links than it keeps
 * (droppedLinksCount), a 200-byte name cut to the bound, every span kind
 * in turn. Batches of 7 spans, so requests hold several spans and spans
 * of one trace may fall in different lines.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sluice/sluice.h>

int main(int argc, char **argv)
{
    if (argc != 3 || atoi(argv[2]) < 1) {
        fprintf(stderr, "usage: otlp_spans FILE N\n");
        return 2;
    }
    int n = atoi(argv[2]);
    sl_trace_exporter e;
    char err[512];
    if (sl_otlp_file_exporter(argv[1], &e, err, sizeof(err))) {
        fprintf(stderr, "otlp_spans: %s\n", err);
        return 1;
    }
    sl_tracer_conf conf = {.service_name = "otlp-schema \"test\"",
                           .sample_ratio = 1,
                           .queue_capacity = 4096,
                           .batch_size = 7,
                           .flush_interval_ms = 50};
    sl_tracer *t;
    if (sl_tracer_new(&conf, &e, &t, err, sizeof(err))) {
        fprintf(stderr, "otlp_spans: %s\n", err);
        return 1;
    }
    int spans = 0;
    for (int i = 0; i < n; i++) {
        sl_trace_ctx remote, *parent = NULL;
        static const char state[] = "congo=t61rcWkgMzE,rojo=q\"u\\o"; /* a quote, a backslash */
        if (i % 2 &&
            sl_traceparent_parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", 55,
                                 &remote) == 0 &&
            sl_tracestate_parse(state, sizeof(state) - 1, &remote) == 0)
            parent = &remote;
        sl_span root, child, leaf;
        sl_span_start(t, &root, "root span", SL_SPAN_KIND_SERVER, parent);
        sl_span_set_str(&root, "str", "caf\xc3\xa9 \xe2\x82\xac");
        sl_span_set_int(&root, "int.min", INT64_MIN);
        sl_span_set_int(&root, "int.max", INT64_MAX);
        sl_span_set_double(&root, "double", 3.25);
        sl_span_set_double(&root, "nan", NAN);
        sl_span_set_double(&root, "inf", -INFINITY);
        sl_span_set_bool(&root, "yes", 1);
        sl_span_set_bool(&root, "no", 0);
        sl_span_set_status(&root, SL_SPAN_STATUS_OK, NULL);
        sl_trace_ctx rc = sl_span_context(&root);

        sl_span_start(t, &child, "child \"quoted\"\n\t\x01", SL_SPAN_KIND_CLIENT, &rc);
        sl_span_add_link(&child, &remote);
        sl_span_set_status(&child, SL_SPAN_STATUS_ERROR, "bad \\ \"x\" \x7f \xff\xfe end");
        sl_trace_ctx cc = sl_span_context(&child);

        char name[200];
        memset(name, 'x', sizeof(name) - 1);
        name[sizeof(name) - 1] = 0;
        sl_span_start(t, &leaf, name, i % 6, &cc);
        for (int k = 0; k < SL_SPAN_ATTRS_MAX + 2; k++) {
            char key[32];
            snprintf(key, sizeof(key), "k%d", k);
            sl_span_set_int(&leaf, key, k);
        }
        for (int k = 0; k < SL_SPAN_LINKS_MAX + 1; k++) sl_span_add_link(&leaf, &rc);
        sl_span_end(&leaf, 0);
        sl_span_end(&child, 0);
        sl_span_end(&root, 0);
        spans += 3;
    }
    sl_tracer_stats st;
    sl_tracer_flush(t, 30000);
    sl_tracer_stats_get(t, &st);
    sl_tracer_free(t);
    if (st.exported != (uint64_t)spans) {
        fprintf(stderr, "otlp_spans: %llu of %d spans exported\n", (unsigned long long)st.exported,
                spans);
        return 1;
    }
    printf("spans: %d\n", spans);
    return 0;
}
