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
 */
#include "sqlite3ext.h"
SQLITE_EXTENSION_INIT1

#include <pthread.h>

#define SLOTS 65536

typedef struct {
  sqlite3_int64 id;
  sqlite3 *db;
} Slot;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static Slot slots[SLOTS];
static sqlite3_int64 next_id = 1;

static void release(void *data) {
  Slot *slot = (Slot *)data;
  pthread_mutex_lock(&lock);
  slot->id = 0;
  slot->db = 0;
  pthread_mutex_unlock(&lock);
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
  return sqlite3_create_function_v2(db, "sqlsim_interrupt", 1, SQLITE_UTF8, 0, interrupt, 0, 0, 0);
}
