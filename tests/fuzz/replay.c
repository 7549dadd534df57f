/*
 * Replay fuzz inputs without libFuzzer, so ctest can run the regression
 * corpus on every build: each argument is a file (or a directory of them)
 * fed once to LLVMFuzzerTestOneInput.
 */

#include <sys/stat.h>

#include <dirent.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/* Feed one file; -1 if it cannot be read. */
static int
replay_file(const char *path)
{
	uint8_t	*data;
	long	 size;
	FILE	*fp;

	if ((fp = fopen(path, "rb")) == NULL)
		return -1;
	fseek(fp, 0, SEEK_END);
	size = ftell(fp);
	rewind(fp);
	if (size < 0 || (data = malloc((size_t)size + 1)) == NULL ||
	    fread(data, 1, (size_t)size, fp) != (size_t)size) {
		fclose(fp);
		return -1;
	}
	fclose(fp);
	LLVMFuzzerTestOneInput(data, (size_t)size);
	free(data);
	return 0;
}

/* Feed a file, or every regular file in a directory; returns files fed. */
static int
replay_path(const char *path)
{
	struct dirent	*de;
	struct stat	 sb;
	char		 child[PATH_MAX];
	DIR		*dir;
	int		 n = 0;

	if (stat(path, &sb) == -1)
		return -1;
	if (!S_ISDIR(sb.st_mode))
		return replay_file(path) == 0 ? 1 : -1;
	if ((dir = opendir(path)) == NULL)
		return -1;
	while ((de = readdir(dir)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(child, sizeof child, "%s/%s", path, de->d_name);
		/* Subdirectories hold other targets' inputs. */
		if (stat(child, &sb) == -1 || !S_ISREG(sb.st_mode))
			continue;
		if (replay_file(child) == 0)
			n++;
	}
	closedir(dir);
	return n;
}

int
main(int argc, char **argv)
{
	int	 i, n, total = 0;

	for (i = 1; i < argc; i++) {
		if ((n = replay_path(argv[i])) < 0) {
			fprintf(stderr, "replay: cannot read %s\n", argv[i]);
			return 1;
		}
		total += n;
	}
	printf("replayed %d inputs\n", total);
	return 0;
}
