/*
 * engine/error.c - texts and names of the SL_E... codes, from the one
 * SL_ERRNO_MAP X-macro in sluice/error.h.
 */
#include "sluice/error.h"

const char *sl_strerror(int code)
{
    switch (code) {
    case 0: return "success";
#define SL_ERR_TEXT_(name, value, text) \
    case value: return text;
        SL_ERRNO_MAP(SL_ERR_TEXT_)
#undef SL_ERR_TEXT_
    default: return "unknown error";
    }
}

const char *sl_err_name(int code)
{
    switch (code) {
    case 0: return "SL_OK";
#define SL_ERR_NAME_(name, value, text) \
    case value: return "SL_" #name;
        SL_ERRNO_MAP(SL_ERR_NAME_)
#undef SL_ERR_NAME_
    default: return "SL_E?";
    }
}
