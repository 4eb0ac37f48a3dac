/* Calls on descriptors and paths that are not the library's: the same
 * transcript with and without the library (the test compares them).
 * argv[1] is an empty scratch directory. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define SHOW(name, expr)                                                           \
	do {                                                                       \
		errno = 0;                                                         \
		long r_ = (long)(expr);                                            \
		printf("%-12s %ld %s\n", name, r_, r_ < 0 ? strerror(errno) : ""); \
	} while (0)

static int cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void handler(int signo)
{
	(void)signo;
}

int main(int argc, char **argv)
{
	if (argc != 2)
		return 2;
	char path[PATH_MAX], link[PATH_MAX], buf[64];
	snprintf(path, sizeof(path), "%s/file", argv[1]);
	snprintf(link, sizeof(link), "%s/link", argv[1]);

	int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
	SHOW("open", fd >= 0);
	SHOW("write", write(fd, "hello world", 11));
	SHOW("pwrite", pwrite(fd, "W", 1, 6));
	SHOW("lseek", lseek(fd, 0, SEEK_SET));
	memset(buf, 0, sizeof(buf));
	SHOW("read", read(fd, buf, sizeof(buf)));
	printf("data         %s\n", buf);
	SHOW("pread", pread(fd, buf, 5, 6));
	printf("data         %.5s\n", buf);
	struct stat st;
	SHOW("fstat", fstat(fd, &st) == 0 && st.st_size == 11 && S_ISREG(st.st_mode));
	SHOW("stat", stat(path, &st) == 0 && st.st_size == 11);
	SHOW("symlink", symlink("file", link));
	SHOW("lstat", lstat(link, &st) == 0 && S_ISLNK(st.st_mode));
	ssize_t n = readlink(link, buf, sizeof(buf));
	SHOW("readlink", n);
	printf("target       %.*s\n", (int)(n > 0 ? n : 0), buf);
	char *rp = realpath(link, NULL);
	SHOW("realpath", rp && !strcmp(rp + strlen(rp) - 5, "/file"));
	free(rp);
	SHOW("access", access(path, R_OK | W_OK));
	char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	SHOW("mmap", p != MAP_FAILED);
	printf("mapped       %.11s\n", p);
	SHOW("mprotect", mprotect(p, 4096, PROT_READ));
	SHOW("munmap", munmap(p, 4096));
	char *a = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	a[0] = 'x';
	char *b = mremap(a, 8192, 65536, MREMAP_MAYMOVE);
	SHOW("mremap", b != MAP_FAILED && b[0] == 'x');
	SHOW("munmap", munmap(b, 65536));
	FILE *f = fopen(path, "r");
	SHOW("fopen", f != NULL);
	SHOW("fgets", fgets(buf, sizeof(buf), f) != NULL);
	printf("line         %s\n", buf);
	SHOW("fclose", fclose(f));
	int d = dup(fd);
	SHOW("dup2", dup2(d, 100));
	SHOW("close", close(100));
	SHOW("close", close(d));
	SHOW("close", close(fd));
	SHOW("close", close(fd));

	/* Directories, and the host's paths under /dev and /sys. */
	DIR *dir = opendir(argv[1]);
	SHOW("opendir", dir != NULL);
	char *names[8];
	int count = 0;
	struct dirent *e;
	while ((e = readdir(dir)) != NULL && count < 8)
		names[count++] = strdup(e->d_name);
	qsort(names, count, sizeof(names[0]), cmp);
	for (int i = 0; i < count; i++)
		printf("entry        %s\n", names[i]);
	SHOW("closedir", closedir(dir));
	SHOW("stat", stat("/dev/null", &st) == 0 && S_ISCHR(st.st_mode));
	SHOW("open", open("/nonexistent/file", O_RDONLY));
	SHOW("stat", stat("/sys/bus/pci/devices/ffff:ff:1f.7", &st));
	SHOW("opendir", (dir = opendir("/sys/bus/pci/devices")) != NULL);
	if (dir)
		closedir(dir);

	/* Sockets: the library's peek must not consume a packet. */
	int sv[2];
	SHOW("socketpair", socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv));
	SHOW("send", send(sv[0], "vfio-dmabuf\0X12345678", 21, 0));
	int pending = -1;
	SHOW("ioctl", ioctl(sv[1], FIONREAD, &pending));
	printf("pending      %d\n", pending);
	SHOW("pread", pread(sv[1], buf, 4, 0));
	SHOW("recv", recv(sv[1], buf, sizeof(buf), 0));
	printf("packet       %.11s\n", buf);
	SHOW("ioctl", ioctl(999, FIONREAD, &pending));
	SHOW("close", close(sv[0]));
	SHOW("close", close(sv[1]));

	/* Other signals' actions are the C library's. */
	struct sigaction sa = { 0 }, old;
	sa.sa_handler = handler;
	SHOW("sigaction", sigaction(SIGUSR1, &sa, NULL));
	SHOW("sigaction", sigaction(SIGUSR1, NULL, &old) == 0 && old.sa_handler == handler);
	SHOW("raise", raise(SIGUSR1));
	SHOW("sigaction", sigaction(SIGBUS, NULL, &old) == 0 && old.sa_handler == SIG_DFL);
	SHOW("unlink", unlink(link));
	SHOW("unlink", unlink(path));
	return 0;
}
