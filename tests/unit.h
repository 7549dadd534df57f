/*
 * Unit suites (no daemon process): one way to run a Check suite.
 */
#ifndef LOCKS_TESTS_UNIT_H
#define LOCKS_TESTS_UNIT_H

#include <check.h>

int	 unit_run_suite(Suite *);

#endif
