/*
 * cli/msgfmt.c - the -f format of `sluice consume` (kcat's tokens %t %p %o %k
 * %s %T, and %K %S for lengths; escapes \n \t \r \\): its check, and the
 * one printer that the directory path (cmd_broker.c) and the Kafka path
 * (cmd_kafka.c) both use, so both print the same bytes.
 */
#include "cli/msgfmt.h"
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

int cli_check_format(const char *fmt)
{
    for (const char *c = fmt; *c; c++) {
        if (*c == '%') {
            c++;
            if (!*c || !strchr("tpokTsSK%", *c)) {
                fprintf(stderr,
                        "sluice consume: -f: unknown format token '%%%c' (known: %%t %%p %%o %%k "
                        "%%s %%T %%K %%S %%%%)\n",
                        *c ? *c : ' ');
                return 2;
            }
        } else if (*c == '\\') {
            c++;
            if (!*c || !strchr("ntr\\", *c)) {
                fprintf(stderr,
                        "sluice consume: -f: unknown escape '\\%c' (known: \\n \\t \\r \\\\)\n",
                        *c ? *c : ' ');
                return 2;
            }
        }
    }
    return 0;
}

void cli_print_msg(const char *fmt, const char *topic, const sl_message *m)
{
    for (const char *c = fmt; *c; c++) {
        if (*c == '%') {
            switch (*++c) {
            case 't': fputs(topic, stdout); break;
            case 'p': printf("%d", m->partition); break;
            case 'o': printf("%" PRId64, m->offset); break;
            case 'T': printf("%" PRId64, m->timestamp); break;
            case 'k':
                if (m->key) fwrite(m->key, 1, m->key_len, stdout);
                break;
            case 's':
                if (m->value) fwrite(m->value, 1, m->value_len, stdout);
                break;
            case 'K': printf("%lld", m->key ? (long long)m->key_len : -1LL); break;
            case 'S': printf("%lld", m->value ? (long long)m->value_len : -1LL); break;
            default: putchar('%'); break;
            }
        } else if (*c == '\\') {
            char e = *++c;
            putchar(e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : '\\');
        } else {
            putchar(*c);
        }
    }
}
