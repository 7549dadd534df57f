/*
 * Waiting on outside holders without polling.
 *
 * The file store's helper.  When a process outside the broker flocks a
 * lock file, the lock table marks the lock blocked and the file store
 * waits for it.  For each blocked lock a watch thread opens the file and
 * sits in a blocking flock(2) in the mode the queue's head wants.  When
 * the kernel grants it, the thread hands its descriptor (now holding the
 * flock) back to the event loop through an eventfd, and the store adopts
 * it: the grant follows the outsider's release at once, and no outsider
 * can slip in between.
 *
 * A watch that is no longer wanted (the waiters timed out, were cancelled
 * or went away, or the head now wants another mode) is cancelled: SIGUSR1,
 * whose handler is installed without SA_RESTART, turns the blocking flock
 * into EINTR.  A signal that lands just before the thread enters flock()
 * would be lost, so cancelled watches are signalled again every few
 * milliseconds until their thread reports back; every thread is joined
 * and every descriptor closed.
 *
 * At most WATCH_MAX_THREADS watches run at once; locks blocked beyond that
 * are polled by the file store instead (store_file_poll).
 */

#include <sys/eventfd.h>
#include <sys/file.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "daemon.h"

#define WATCH_MAX_THREADS	256
#define WATCH_STACK_SIZE	(64 * 1024)
#define WATCH_KICK_USEC		2000	/* re-signal cancelled watches */

struct watch {
	TAILQ_ENTRY(watch)	 entry;		/* active until reaped */
	TAILQ_ENTRY(watch)	 done_entry;	/* finished, not reaped */
	struct watcher		*watcher;
	struct lock		*lock;		/* NULL once cancelled */
	pthread_t		 thread;
	int			 fd;
	enum proto_mode		 mode;
	int			 error;		/* the thread's result */
	atomic_int		 cancelled;
	atomic_int		 finished;
};
TAILQ_HEAD(watches, watch);

struct watcher {
	struct store_file	*store;
	int			 dirfd;
	int			 efd;
	struct event		*efd_ev;
	struct event		*kick_ev;
	struct watches		 active;	/* event loop only */
	struct watches		 done;		/* under mtx */
	pthread_mutex_t		 mtx;
	size_t			 nactive;
	size_t			 ncancelled;
};

/* SIGUSR1 only interrupts a watch thread's flock; nothing to do here. */
static void
watch_sigusr1(int sig)
{
	(void)sig;
}

/* The thread: block in flock until granted, failed or cancelled. */
static void *
watch_main(void *arg)
{
	struct watch	*w = arg;
	struct watcher	*watcher = w->watcher;
	uint64_t	 one = 1;
	int		 op, error = 0;

	op = w->mode == PROTO_SHARED ? LOCK_SH : LOCK_EX;
	for (;;) {
		if (atomic_load(&w->cancelled)) {
			error = ECANCELED;
			break;
		}
		if (flock(w->fd, op) == 0)
			break;
		if (errno != EINTR) {
			error = errno;
			break;
		}
	}
	w->error = error;
	pthread_mutex_lock(&watcher->mtx);
	TAILQ_INSERT_TAIL(&watcher->done, w, done_entry);
	atomic_store(&w->finished, 1);
	pthread_mutex_unlock(&watcher->mtx);
	if (write(watcher->efd, &one, sizeof one) == -1)
		abort();	/* an eventfd write cannot fail here */
	return NULL;
}

/* Start a thread with a small stack and only SIGUSR1 unblocked. */
static int
watch_spawn(struct watch *w)
{
	pthread_attr_t	 attr;
	sigset_t	 all, old;
	int		 error;

	sigfillset(&all);
	sigdelset(&all, SIGUSR1);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, WATCH_STACK_SIZE);
	error = pthread_create(&w->thread, &attr, watch_main, w);
	pthread_attr_destroy(&attr);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return error;
}

/* Find the live watch of a lock. */
static struct watch *
watch_find(struct watcher *watcher, struct lock *lock)
{
	struct watch	*w;

	TAILQ_FOREACH(w, &watcher->active, entry) {
		if (w->lock == lock)
			return w;
	}
	return NULL;
}

/* Cancel a watch: its thread is interrupted and reaped later. */
static void
watch_cancel(struct watcher *watcher, struct watch *w)
{
	struct timeval	 tv = { 0, WATCH_KICK_USEC };

	w->lock = NULL;
	atomic_store(&w->cancelled, 1);
	pthread_kill(w->thread, SIGUSR1);
	watcher->ncancelled++;
	if (!evtimer_pending(watcher->kick_ev, NULL))
		evtimer_add(watcher->kick_ev, &tv);
}

/* Start watching a blocked lock; on failure the store polls it. */
static void
watch_start(struct watcher *watcher, struct lock *lock, enum proto_mode mode)
{
	struct watch	*w;

	if (watcher->nactive >= WATCH_MAX_THREADS)
		return;
	if ((w = calloc(1, sizeof *w)) == NULL)
		return;
	w->watcher = watcher;
	w->lock = lock;
	w->mode = mode;
	w->fd = openat(watcher->dirfd, lock_name(lock),
	    O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK);
	if (w->fd == -1) {
		log_warn("watch %s", lock_name(lock));
		free(w);
		return;
	}
	if (watch_spawn(w) != 0) {
		log_warnx("cannot start a watch thread for %s",
		    lock_name(lock));
		close(w->fd);
		free(w);
		return;
	}
	TAILQ_INSERT_TAIL(&watcher->active, w, entry);
	watcher->nactive++;
}

/* The store's blocked callback: keep one right watch per blocked lock. */
static void
watch_blocked_cb(struct lock *lock, int blocked, enum proto_mode mode,
    void *arg)
{
	struct watcher	*watcher = arg;
	struct watch	*w;

	w = watch_find(watcher, lock);
	if (w != NULL && blocked && w->mode == mode)
		return;
	if (w != NULL)
		watch_cancel(watcher, w);
	if (blocked)
		watch_start(watcher, lock, mode);
}

/* Re-signal cancelled watches until every one of them has finished. */
static void
watch_kick_cb(evutil_socket_t fd, short events, void *arg)
{
	struct watcher	*watcher = arg;
	struct watch	*w;
	struct timeval	 tv = { 0, WATCH_KICK_USEC };

	(void)fd;
	(void)events;
	TAILQ_FOREACH(w, &watcher->active, entry) {
		if (w->lock == NULL && !atomic_load(&w->finished))
			pthread_kill(w->thread, SIGUSR1);
	}
	if (watcher->ncancelled > 0)
		evtimer_add(watcher->kick_ev, &tv);
}

/* Join a finished watch; hand its flock to the store if still wanted. */
static void
watch_reap(struct watcher *watcher, struct watch *w)
{
	struct lock	*lock = w->lock;

	pthread_join(w->thread, NULL);
	TAILQ_REMOVE(&watcher->active, w, entry);
	watcher->nactive--;
	if (lock == NULL)
		watcher->ncancelled--;
	if (lock != NULL && w->error == 0)
		store_file_adopt(watcher->store, lock, w->fd, w->mode);
	else
		close(w->fd);
	if (lock != NULL && w->error != 0)
		log_warnx("watch %s: %s", lock_name(lock), strerror(w->error));
	free(w);
}

/* The eventfd fired: reap every finished watch. */
static void
watch_done_cb(evutil_socket_t fd, short events, void *arg)
{
	struct watcher	*watcher = arg;
	struct watches	 done;
	struct watch	*w;
	uint64_t	 count;

	(void)events;
	if (read(fd, &count, sizeof count) == -1 && errno != EAGAIN)
		log_warn("watch eventfd");
	pthread_mutex_lock(&watcher->mtx);
	TAILQ_INIT(&done);
	TAILQ_CONCAT(&done, &watcher->done, done_entry);
	pthread_mutex_unlock(&watcher->mtx);
	while ((w = TAILQ_FIRST(&done)) != NULL) {
		TAILQ_REMOVE(&done, w, done_entry);
		watch_reap(watcher, w);
	}
	store_file_watch_ended(watcher->store);
}

/* Install SIGUSR1 without SA_RESTART, so it interrupts flock(2). */
static void
watch_signal_init(void)
{
	struct sigaction	 sa;

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = watch_sigusr1;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR1, &sa, NULL) == -1)
		fatal("sigaction SIGUSR1");
}

/* Set up watches for the file store's blocked locks. */
struct watcher *
watcher_new(struct event_base *base, struct store_file *store, int dirfd)
{
	struct watcher	*watcher;

	if ((watcher = calloc(1, sizeof *watcher)) == NULL)
		fatal("calloc");
	watcher->store = store;
	watcher->dirfd = dirfd;
	TAILQ_INIT(&watcher->active);
	TAILQ_INIT(&watcher->done);
	pthread_mutex_init(&watcher->mtx, NULL);
	watcher->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (watcher->efd == -1)
		fatal("eventfd");
	watcher->efd_ev = event_new(base, watcher->efd, EV_READ | EV_PERSIST,
	    watch_done_cb, watcher);
	watcher->kick_ev = evtimer_new(base, watch_kick_cb, watcher);
	if (watcher->efd_ev == NULL || watcher->kick_ev == NULL)
		fatalx("cannot set up watch events");
	event_add(watcher->efd_ev, NULL);
	watch_signal_init();
	store_file_set_blocked_cb(store, watch_blocked_cb, watcher);
	return watcher;
}

/* How many blocked locks have a watch thread. */
size_t
watcher_nwatching(const struct watcher *watcher)
{
	return watcher->nactive - watcher->ncancelled;
}

/* Cancel and join every watch, at shutdown. */
void
watcher_free(struct watcher *watcher)
{
	struct watch		*w;
	struct timespec		 pause = { 0, WATCH_KICK_USEC * 1000 };

	if (watcher == NULL)
		return;
	store_file_set_blocked_cb(watcher->store, NULL, NULL);
	TAILQ_FOREACH(w, &watcher->active, entry) {
		if (w->lock != NULL)
			watch_cancel(watcher, w);
	}
	while (!TAILQ_EMPTY(&watcher->active)) {
		TAILQ_FOREACH(w, &watcher->active, entry) {
			if (!atomic_load(&w->finished))
				pthread_kill(w->thread, SIGUSR1);
		}
		nanosleep(&pause, NULL);
		watch_done_cb(watcher->efd, EV_READ, watcher);
	}
	event_free(watcher->efd_ev);
	event_free(watcher->kick_ev);
	close(watcher->efd);
	pthread_mutex_destroy(&watcher->mtx);
	free(watcher);
}
