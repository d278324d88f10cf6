/*
 * The node's command line: reads chatd's settings from the environment and
 * the flags into a chatd_config (actors/config.h), and prints the usage.
 */
#ifndef CHATD_NODE_OPTIONS_H
#define CHATD_NODE_OPTIONS_H

#include <stdio.h>

#include "actors/config.h"

/*
 * Reads the environment, then argv, into cfg (which holds the defaults).
 * Returns 0 on success, 1 when --help was given (usage printed to stdout),
 * -1 on a bad value (a message naming it printed to stderr).
 */
int chatd_config_parse(chatd_config *cfg, int argc, char **argv);

/* Parses "socket,producer,..." or "all" into a role mask; 0 when invalid. */
unsigned chatd_roles_parse(const char *s);

/* Prints the usage with every flag, its variable and its default. */
void chatd_config_usage(FILE *out);

#endif
