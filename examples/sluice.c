#include <stdio.h>
#include "sluice/sluice.h"
int main(int argc, char **argv) { printf("sluice %s (%s)\n", sl_version(), sl_allocator()); return 0; }
