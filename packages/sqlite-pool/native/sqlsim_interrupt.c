/*
 * sqlite3_interrupt() for connections in worker threads.
 *
 * A Reader connection in a worker thread runs SQLite's native code, which `worker.terminate()` cannot stop: an
 * aggregate or a sort that computes before its first row would keep its core until that row. SQLite's own remedy is
 * sqlite3_interrupt(), which any thread may call on a connection. better-sqlite3 does not expose it, so this
 * extension does: every connection that loads it gets an id (`sqlsim_connection_id()`), and any connection of the
 * process that loads it can interrupt another by id (`sqlsim_interrupt(id)`, 1 if the connection was found). All
 * connections share this library's table, since the process loads the shared object once.
 *
 * A connection leaves the table when it closes (the destructor of its `sqlsim_connection_id` function runs inside
 * sqlite3_close), under the same mutex as the lookup: an id never reaches a closed connection.
 *
 * A time budget for connections on the main thread (`sqlsim_budget(ms)`): a statement that runs longer is
 * interrupted (SQLITE_INTERRUPT), so a read misjudged as short cannot hold the event loop. better-sqlite3 is built
 * without the progress handler, so a watchdog thread does it: a trace callback notes each statement's deadline when
 * it starts (SQLITE_TRACE_STMT) and clears it when it ends (SQLITE_TRACE_PROFILE); the watchdog sleeps until the
 * earliest deadline, or at most TICK_NS while statements keep starting, and interrupts every connection past its
 * deadline. A statement is interrupted at most budget + TICK_NS after it started (plus the watchdog's scheduling
 * delay: it runs at a real-time priority where the process may set one, see `watchdog`). After a second without statements the watchdog waits to be woken, so an idle process does not wake it.
 *
 * The CPU time of the last statement (`sqlsim_last_millis()`): a timer around the call would count whatever else the
 * thread did in between, and wall time the thread's preemptions. Reading the thread's CPU clock is a system call
 * (about 0.5 us in a VM, a fifth of a point query), so the running thread never reads it at the start: a statement
 * shorter than `exact_after` (the second argument of `sqlsim_budget`) reports its wall time, an upper bound of its CPU
 * time; the watchdog marks a statement still running at one of its ticks with the thread's CPU clock at that moment,
 * and a longer statement reports the CPU time since the mark plus the wall time before it, counted as CPU up to
 * TICK_NS (the longest the mark waits for a watchdog on time: a watchdog delayed on a loaded machine must not make a
 * preempted statement look long). One that ended before any tick reports its wall time.
 * The watchdog runs this library's code for the life of the process, so starting it pins the library
 * (RTLD_NODELETE): closing the last connection that loaded it, as better-sqlite3 does at exit, must not unmap it.
 */
#define _GNU_SOURCE
#include "sqlite3ext.h"
SQLITE_EXTENSION_INIT1

#include <dlfcn.h>
#include <pthread.h>
#include <sched.h>
#include <time.h>

#define SLOTS 65536
/* connections with a budget at once (one or two per process: the main-thread Reader connections) */
#define BUDGETED 64
/* the watchdog's longest sleep while statements keep starting */
#define TICK_NS 2000000LL
/* the watchdog waits to be woken after this long without a statement */
#define IDLE_NS 1000000000LL

typedef struct {
  sqlite3_int64 id;
  sqlite3 *db;
  /* the statement time budget in nanoseconds; 0: none */
  sqlite3_int64 budget_ns;
  /* statements shorter than this report their wall time as their CPU time (nanoseconds) */
  sqlite3_int64 exact_after_ns;
  /* when the running statement runs over its budget (CLOCK_MONOTONIC); 0: no statement running */
  sqlite3_int64 deadline_ns;
  /* when the running statement started (CLOCK_MONOTONIC), and the thread it runs on */
  sqlite3_int64 start_ns;
  pthread_t thread;
  /* the watchdog's mark on the running statement: when (CLOCK_MONOTONIC; 0: none yet) and the thread's CPU clock */
  sqlite3_int64 mark_ns;
  sqlite3_int64 mark_cpu_ns;
  /* the CPU time the last statement that ended took (for `sqlsim_last_millis()`) */
  sqlite3_int64 last_ns;
} Slot;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static Slot slots[SLOTS];
static sqlite3_int64 next_id = 1;

/* The watchdog's state, under `lock`: the connections with a budget, and whether it waits to be woken. */
static Slot *budgeted[BUDGETED];
static int budgeted_count = 0;
static pthread_cond_t wake;
static int watchdog_started = 0;
static int watchdog_idle = 0;
static sqlite3_int64 last_start_ns = 0;

static sqlite3_int64 clock_ns(clockid_t clock) {
  struct timespec now;
  clock_gettime(clock, &now);
  return (sqlite3_int64)now.tv_sec * 1000000000LL + now.tv_nsec;
}

static sqlite3_int64 monotonic_ns(void) { return clock_ns(CLOCK_MONOTONIC); }

/* The CPU clock of `thread`, read from any thread; 0 if it cannot be read. */
static sqlite3_int64 thread_cpu_ns(pthread_t thread) {
  clockid_t clock;
  if (pthread_getcpuclockid(thread, &clock) != 0) return 0;
  return clock_ns(clock);
}

/* Called with `lock` held. */
static void unbudget(Slot *slot) {
  for (int i = 0; i < budgeted_count; i++) {
    if (budgeted[i] == slot) {
      budgeted[i] = budgeted[--budgeted_count];
      break;
    }
  }
  slot->budget_ns = 0;
  slot->deadline_ns = 0;
}

static void release(void *data) {
  Slot *slot = (Slot *)data;
  pthread_mutex_lock(&lock);
  unbudget(slot);
  slot->id = 0;
  slot->db = 0;
  pthread_mutex_unlock(&lock);
}

static void *watchdog(void *arg) {
  (void)arg;
  /* The budget holds only if this thread runs when its deadline comes, also when every core is busy (a CI machine,
   * a loaded server): there a thread of normal priority was seen to wake 20 ms and more late, and a statement it
   * should have stopped ran to its end on the main thread. So it takes the lowest real-time priority where the
   * process may (root, CAP_SYS_NICE or RLIMIT_RTPRIO); elsewhere the call fails and it keeps the normal one. It
   * sleeps between ticks and works for microseconds at each, so it takes next to nothing from other threads. */
  struct sched_param priority = { .sched_priority = sched_get_priority_min(SCHED_RR) };
  pthread_setschedparam(pthread_self(), SCHED_RR, &priority);
  pthread_mutex_lock(&lock);
  for (;;) {
    sqlite3_int64 now = monotonic_ns();
    sqlite3_int64 earliest = 0;
    for (int i = 0; i < budgeted_count; i++) {
      Slot *slot = budgeted[i];
      if (slot->deadline_ns == 0) continue;
      if (slot->mark_ns == 0) {
        slot->mark_cpu_ns = thread_cpu_ns(slot->thread);
        slot->mark_ns = monotonic_ns();
      }
      if (slot->deadline_ns <= now) {
        sqlite3_interrupt(slot->db);
        slot->deadline_ns = 0;
      } else if (earliest == 0 || slot->deadline_ns < earliest) {
        earliest = slot->deadline_ns;
      }
    }
    if (earliest == 0 && now - last_start_ns > IDLE_NS) {
      watchdog_idle = 1;
      pthread_cond_wait(&wake, &lock);
      watchdog_idle = 0;
      continue;
    }
    sqlite3_int64 until = now + TICK_NS;
    if (earliest != 0 && earliest < until) until = earliest;
    struct timespec at = { (time_t)(until / 1000000000LL), (long)(until % 1000000000LL) };
    pthread_cond_timedwait(&wake, &lock, &at);
  }
  return 0;
}

/* Called with `lock` held: starts the watchdog once per process. */
static int start_watchdog(void) {
  if (watchdog_started) return SQLITE_OK;
  Dl_info self;
  if (dladdr((void *)watchdog, &self) == 0 || dlopen(self.dli_fname, RTLD_NOW | RTLD_NODELETE) == 0) return SQLITE_ERROR;
  pthread_condattr_t attributes;
  pthread_condattr_init(&attributes);
  pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC);
  pthread_cond_init(&wake, &attributes);
  pthread_condattr_destroy(&attributes);
  pthread_t thread;
  if (pthread_create(&thread, 0, watchdog, 0) != 0) return SQLITE_ERROR;
  pthread_detach(thread);
  watchdog_started = 1;
  return SQLITE_OK;
}

static int on_trace(unsigned type, void *data, void *statement, void *text) {
  (void)statement;
  (void)text;
  Slot *slot = (Slot *)data;
  pthread_mutex_lock(&lock);
  if (slot->budget_ns != 0) {
    sqlite3_int64 now = monotonic_ns();
    if (type == SQLITE_TRACE_STMT) {
      slot->start_ns = now;
      slot->deadline_ns = now + slot->budget_ns;
      slot->thread = pthread_self();
      slot->mark_ns = 0;
      last_start_ns = now;
      if (watchdog_idle) pthread_cond_signal(&wake);
    } else {
      // CPU time, not wall time: a thread preempted on a busy machine did not run a long statement.
      sqlite3_int64 wall = now - slot->start_ns;
      if (wall < slot->exact_after_ns || slot->mark_ns == 0) {
        slot->last_ns = wall;
      } else {
        sqlite3_int64 before = slot->mark_ns - slot->start_ns;
        sqlite3_int64 after = clock_ns(CLOCK_THREAD_CPUTIME_ID) - slot->mark_cpu_ns;
        slot->last_ns = (before < TICK_NS ? before : TICK_NS) + (after > 0 ? after : 0);
      }
      slot->deadline_ns = 0;
    }
  }
  pthread_mutex_unlock(&lock);
  return 0;
}

/* sqlsim_last_millis(): the CPU time of this connection's last statement with a budget, in milliseconds. */
static void last_millis(sqlite3_context *context, int argc, sqlite3_value **argv) {
  (void)argc;
  (void)argv;
  Slot *slot = (Slot *)sqlite3_user_data(context);
  pthread_mutex_lock(&lock);
  sqlite3_int64 last = slot->last_ns;
  pthread_mutex_unlock(&lock);
  sqlite3_result_double(context, (double)last / 1000000.0);
}

/*
 * sqlsim_budget(ms, exact_after_ms): this connection's statements are interrupted after `ms` milliseconds; 0 removes
 * the budget. `sqlsim_last_millis()` is the CPU time of a statement that ran `exact_after_ms` or longer, the wall time
 * of a shorter one.
 */
static void budget(sqlite3_context *context, int argc, sqlite3_value **argv) {
  (void)argc;
  Slot *slot = (Slot *)sqlite3_user_data(context);
  double ms = sqlite3_value_double(argv[0]);
  double exact_after_ms = sqlite3_value_double(argv[1]);
  if (!(ms >= 0) || !(exact_after_ms >= 0)) {
    sqlite3_result_error(context, "sqlsim_budget: the budget and the exact CPU time threshold are milliseconds, 0 or more", -1);
    return;
  }
  int rc = SQLITE_OK;
  pthread_mutex_lock(&lock);
  unbudget(slot);
  if (ms > 0) {
    if (budgeted_count == BUDGETED) {
      rc = SQLITE_FULL;
    } else {
      rc = start_watchdog();
      if (rc == SQLITE_OK) {
        slot->budget_ns = (sqlite3_int64)(ms * 1000000.0);
        slot->exact_after_ns = (sqlite3_int64)(exact_after_ms * 1000000.0);
        budgeted[budgeted_count++] = slot;
      }
    }
  }
  pthread_mutex_unlock(&lock);
  if (rc != SQLITE_OK) {
    sqlite3_result_error(context, "sqlsim_budget: cannot watch one more connection", -1);
    return;
  }
  // Outside the lock: the callback takes it.
  sqlite3_trace_v2(sqlite3_context_db_handle(context), ms > 0 ? SQLITE_TRACE_STMT | SQLITE_TRACE_PROFILE : 0,
                   ms > 0 ? on_trace : 0, slot);
  sqlite3_result_int(context, 1);
}

static void connection_id(sqlite3_context *context, int argc, sqlite3_value **argv) {
  (void)argc;
  (void)argv;
  Slot *slot = (Slot *)sqlite3_user_data(context);
  pthread_mutex_lock(&lock);
  sqlite3_int64 id = slot->id;
  pthread_mutex_unlock(&lock);
  sqlite3_result_int64(context, id);
}

static void interrupt(sqlite3_context *context, int argc, sqlite3_value **argv) {
  (void)argc;
  sqlite3_int64 id = sqlite3_value_int64(argv[0]);
  int found = 0;
  pthread_mutex_lock(&lock);
  for (int i = 0; i < SLOTS && !found; i++) {
    if (id != 0 && slots[i].id == id) {
      sqlite3_interrupt(slots[i].db);
      found = 1;
    }
  }
  pthread_mutex_unlock(&lock);
  sqlite3_result_int(context, found);
}

#ifdef _WIN32
__declspec(dllexport)
#endif
int sqlite3_sqlsiminterrupt_init(sqlite3 *db, char **error, const sqlite3_api_routines *api) {
  SQLITE_EXTENSION_INIT2(api);
  Slot *slot = 0;
  pthread_mutex_lock(&lock);
  for (int i = 0; i < SLOTS && slot == 0; i++) {
    if (slots[i].id == 0) slot = &slots[i];
  }
  if (slot != 0) {
    slot->id = next_id++;
    slot->db = db;
  }
  pthread_mutex_unlock(&lock);
  if (slot == 0) {
    *error = sqlite3_mprintf("sqlsim_interrupt: no free slot");
    return SQLITE_ERROR;
  }
  // On failure sqlite3_create_function_v2 runs the destructor itself, which frees the slot.
  int rc = sqlite3_create_function_v2(db, "sqlsim_connection_id", 0, SQLITE_UTF8, slot, connection_id, 0, 0, release);
  if (rc != SQLITE_OK) return rc;
  rc = sqlite3_create_function_v2(db, "sqlsim_budget", 2, SQLITE_UTF8, slot, budget, 0, 0, 0);
  if (rc != SQLITE_OK) return rc;
  rc = sqlite3_create_function_v2(db, "sqlsim_last_millis", 0, SQLITE_UTF8, slot, last_millis, 0, 0, 0);
  if (rc != SQLITE_OK) return rc;
  return sqlite3_create_function_v2(db, "sqlsim_interrupt", 1, SQLITE_UTF8, 0, interrupt, 0, 0, 0);
}
