/*
 * cli/msgfmt.h - the -f format of `sluice consume` (cli/msgfmt.c).
 */
#ifndef SLUICE_CLI_MSGFMT_H
#define SLUICE_CLI_MSGFMT_H

#include <sluice/sluice.h>

/* 0 when fmt has only known tokens and escapes, else 2 after one line on
 * stderr naming the first unknown one. */
int cli_check_format(const char *fmt);
/* Print m to standard output as fmt says. */
void cli_print_msg(const char *fmt, const char *topic, const sl_message *m);

#endif
