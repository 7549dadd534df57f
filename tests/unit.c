/*
 * Unit suites (no daemon process): one way to run a Check suite.
 */

#include <stdlib.h>

#include "unit.h"

/* Run every test of s; the process's exit status. */
int
unit_run_suite(Suite *s)
{
	SRunner	*sr = srunner_create(s);
	int	 nfailed;

	srunner_run_all(sr, CK_NORMAL);
	nfailed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return nfailed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
